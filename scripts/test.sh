#!/usr/bin/env bash
# The whole test suite: library, kernels against their f64 references, the
# layer-graph gradient and training tests (MLPs and CNNs), naga validation,
# data readers, the command line, doctests. Then (whole-suite runs only) the
# kernel, layer, graph and training tests again under hardware GPUs' grid
# rule (SPARSETRAIN_GRID_CAP=none: no cap on data-dependent grids), so that
# the grid sizes GPUs launch run on a software adapter too (on a GPU, a
# repeat).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-gpu.sh
export SPARSETRAIN_BACKEND="${SPARSETRAIN_BACKEND:-vulkan}"
cargo test --release "$@"
if [ "$#" -eq 0 ]; then
    echo "== again under GPUs' grid rule (SPARSETRAIN_GRID_CAP=none)"
    SPARSETRAIN_GRID_CAP=none cargo test --release --test kernels --test layers --test graph --test sparse --test resume
fi
