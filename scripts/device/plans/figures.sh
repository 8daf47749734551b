# Issue 9's GPU figures, each comparison in one process so that its ratio
# holds even where the GPU's timings vary between calls (BENCHMARKS.md,
# thirteenth session). Sourced by scripts/device/run.sh (`step`, $ST,
# $DATA); about 5 minutes on an H100, then the test suite if time is left
# (its kernel tests about 150 s more: run with BUDGET=520).
# A fresh autotune, not an older build's choice.
rm -f "${SPARSETRAIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsetrain}/matmul-variant.tsv"
step 01-matmul-4096 150 "$ST" bench matmul --sizes 4096 --no-mlp-shapes --min-runs 3 --max-runs 3 --budget 0.3
# The seventeenth session's suspect 4096³ cells, each in a process of its
# own: `coop` ran 13-25 TFLOP/s there after a minute of f32 cells (68-73 in
# the thirteenth session, 71-96 on 8192 products of the same call), and
# `wide` A·Bᵀ from K-major packs 13.6 where the dense step's packed A·Bᵀ ran
# at `wide`'s average (33).
step 01b-matmul-4096-coop-alone 60 "$ST" bench matmul --variants coop --sizes 4096 --no-mlp-shapes \
    --min-runs 5 --max-runs 5 --budget 0.5
step 01c-matmul-4096-wide-alone 60 "$ST" bench matmul --variants wide --sizes 4096 --no-mlp-shapes \
    --min-runs 5 --max-runs 5 --budget 0.5
step 02-coop-big 90 "$ST" bench matmul --variants coop --sizes 8192 --shapes 2048x8192x8192 --no-mlp-shapes \
    --min-runs 5 --max-runs 5 --budget 0.5
T="$ST bench train --model 8192-8192 --batch 2048 --keeps 0.1 --warmup 2 --runs 5"
step 03-mlp8192-f32 60 env SPARSETRAIN_PROFILE=kernels $T
# The fourteenth session's untimed change: `wide` from K-major packs (on by
# default for large products on GPUs); the same step without them.
step 03b-mlp8192-f32-no-kpack 60 env SPARSETRAIN_WIDE_KPACK=off SPARSETRAIN_PROFILE=kernels $T
# Kept products run `wide` on 64 × 64 tiles of 64 threads: ~3 workgroups
# (6 warps) per multiprocessor at 10% of 8192 units. `shared` has the same
# tile on 256 threads: the keep-0.1 step with its kept products in `shared`.
step 03c-mlp8192-f32-kept-shared 60 env SPARSETRAIN_KEPT_MATMUL=shared SPARSETRAIN_PROFILE=kernels $T
# The same occupancy question answered with K splits the device decides
# for every kept product (2 at most there: 4M floats of partials).
step 03d-mlp8192-f32-kept-splits 60 env SPARSETRAIN_KEPT_SPLITS=all SPARSETRAIN_PROFILE=kernels $T
# The eighteenth session's untimed change: each layer's forward and
# input-gradient products of both mask samples in one launch (pairs, f32
# variants only); the same step with the two launched one by one. (The
# seventeenth session's 03e, float uploads, measured no difference.)
step 03e-mlp8192-f32-pairs-off 60 env SPARSETRAIN_PAIRS=off SPARSETRAIN_PROFILE=kernels $T
# The fifteenth session's untimed change: lazy SGD's catch-up in the layers'
# gathers (lazy_gather); the same step with lazy_refresh doing it first.
step 03f-mlp8192-f32-lazy-refresh 60 env SPARSETRAIN_LAZY_GATHER=off SPARSETRAIN_PROFILE=kernels $T
# Each step's update deferred to the weights' next gather (the sixteenth
# session's change, the default on CPU adapters only since the seventeenth:
# 0.49 against 0.38 ms per step there); GPUs run lazy_sgd's pass by default.
step 03g-mlp8192-f32-lazy-deferred 60 env SPARSETRAIN_LAZY_DEFER=on SPARSETRAIN_PROFILE=kernels $T
# The default step again: the spread between 03 and 03h is the noise that
# 03b-03g's differences must exceed (03d's splits won by 3.5% in one run).
step 03h-mlp8192-f32-again 60 $T
# naga's index clamps back in the matmuls (the default before the
# nineteenth session: 27.21 against 25.87 ms dense there).
step 03j-mlp8192-f32-checked 60 env SPARSETRAIN_SHADER_CHECKS=checked SPARSETRAIN_PROFILE=kernels $T
# Every dispatch of the two steps with its grid and time: which kept
# products run below `wide`'s average, and what the 10-wide output layer's
# products cost (`matmul_shared`, 0.24 ms of the keep-0.1 step in the
# seventeenth session, for about 0.2 GFLOP).
step 03i-mlp8192-f32-dispatches 60 env SPARSETRAIN_PROFILE=dispatches $T
step 04-mlp8192-mixed 60 env SPARSETRAIN_PROFILE=kernels $T --precision mixed
# The nineteenth session's untimed rule: `coop` tiled for products with no
# kept size on GPUs (04 runs it), against direct everywhere as before (its
# call 3 timed each mode alone: dense 12.20 tiled, 14.66 direct; keep 0.1
# 1.85 tiled, 1.78 direct).
step 04c-mlp8192-mixed-direct 60 env SPARSETRAIN_COOP=direct SPARSETRAIN_PROFILE=kernels $T --precision mixed
# Pairs from f16 packs (eighteenth session): both samples' packs in one
# launch and their product in another; the same step one by one. (The
# seventeenth session timed 04b's tiled packs: slower, 20.49 against 14.58
# ms dense.)
step 04b-mlp8192-mixed-pairs-off 60 env SPARSETRAIN_PAIRS=off SPARSETRAIN_PROFILE=kernels $T --precision mixed
step 05-mlp4096 60 "$ST" bench train --model 4096-4096 --batch 256 --keeps 0.1,0.05 --runs 5
R="--dataset mnist --data-dir $DATA --keep 0.1 --hidden 1024,1024 --epochs 10 --batch 128 --lr 0.05 --score-lr 0.05"
R="$R --finetune-epochs 2 --finetune-lr 0.01 --select-on 20000"
[ -d "$DATA" ] && step 06-mnist-f32 40 "$ST" train $R
[ -d "$DATA" ] && step 07-mnist-mixed 40 "$ST" train $R --precision mixed
[ -e .dev/torch_peer.py ] && step 08-torch 60 python3 .dev/torch_peer.py step --models 8192,8192 --batches 2048
step 09-cnn 120 "$ST" bench train --model resnet20 --model lenet5 --keeps 0.5,0.25,0.1 --batch 128 --runs 3 --warmup 1
# ResNet-20's steps dispatch by dispatch: the seventeenth session found its
# keep-0.1 step no faster than dense (661 dispatches against 309; BatchNorm
# 3.09 against 1.90 ms, by a count of its launches some 13-16 µs each).
step 09b-resnet20-dispatches 60 env SPARSETRAIN_PROFILE=dispatches "$ST" bench train --model resnet20 --keeps 0.1 \
    --batch 128 --runs 3 --warmup 1
# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/suite.sh"
