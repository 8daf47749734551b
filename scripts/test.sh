#!/usr/bin/env bash
# The whole test suite: library, kernels against their f64 references, the
# MLP gradient and training tests, naga validation, data readers, doctests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-gpu.sh
export SPARSETRAIN_BACKEND="${SPARSETRAIN_BACKEND:-vulkan}"
cargo test --release "$@"
