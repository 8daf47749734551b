#!/usr/bin/env bash
# The whole test suite: library, kernels against their f64 references, the
# layer-graph gradient and training tests (MLPs and CNNs), naga validation,
# data readers, the command line, doctests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-gpu.sh
export SPARSETRAIN_BACKEND="${SPARSETRAIN_BACKEND:-vulkan}"
cargo test --release "$@"
