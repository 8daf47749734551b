#!/usr/bin/env bash
# The whole test suite: library, kernels against their f64 references, the
# layer-graph gradient and training tests (MLPs and CNNs), naga validation,
# data readers, the command line, doctests. Then (whole-suite runs only) the
# kernel, layer, graph and training tests again under hardware GPUs' grid
# rule (SPARSETRAIN_GRID_CAP=none: no cap on data-dependent grids), so that
# the grid sizes GPUs launch run on a software adapter too (on a GPU, a
# repeat); the matmul kernel tests with naga's bounds checks (other
# backends' default; Vulkan's matmuls run without, see
# src/device/pipeline.rs); and the matmul tests once more on a lavapipe
# with cooperative matrices (scripts/lavapipe-coop.sh: Mesa 26 unpacked
# into a folder; with the paired mixed-precision sparse step of
# tests/sparse.rs), so that the mixed-precision kernels run without a GPU,
# where its packages and AVX2 are there (else it says NOT RUN).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-gpu.sh
export SPARSETRAIN_BACKEND="${SPARSETRAIN_BACKEND:-vulkan}"
cargo test --release "$@"
if [ "$#" -eq 0 ]; then
    echo "== again under GPUs' grid rule (SPARSETRAIN_GRID_CAP=none)"
    SPARSETRAIN_GRID_CAP=none cargo test --release --test kernels --test layers --test graph --test sparse --test resume
    # GPUs run a classifier's forward product and weight gradient on
    # `matmul_thin` (`thin_rule`); lavapipe never does by the rule.
    echo "== the models' steps with every thin product on matmul_thin (SPARSETRAIN_THIN=on)"
    SPARSETRAIN_THIN=on cargo test --release --test graph --test sparse --test resume
    # GPUs' convolutions as SPARSETRAIN_IMPLICIT=on runs them: `shared`
    # reading X in place (its element loaders), the sparse step's
    # convolutions in pairs; lavapipe's `regtile` is the default's only
    # implicit reader.
    echo "== the CNN layers and sparse steps on shared with implicit convolutions (SPARSETRAIN_IMPLICIT=on)"
    SPARSETRAIN_MATMUL=shared SPARSETRAIN_IMPLICIT=on cargo test --release --test layers --test sparse
    # With naga's bounds checks in the matmuls, as on Metal, DX12 and GL: on
    # Vulkan they run without them by default (`runtime_checks`).
    echo "== the matmul kernel tests with naga's bounds checks (SPARSETRAIN_SHADER_CHECKS=checked)"
    SPARSETRAIN_SHADER_CHECKS=checked cargo test --release --test kernels matmul
    echo "== the matmul tests with cooperative matrices, on Mesa 26's lavapipe where it can be fetched"
    bash scripts/lavapipe-coop.sh --if-available
fi
