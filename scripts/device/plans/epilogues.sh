# Twenty-first session's changes, for the next call on a GPU (none was
# lent to that session): whole-vec4 gated stores and split-K reduce reads
# (the dense 784-8192-8192-10 step's gated 8192-wide product ran 0.25 ms
# longer than its two siblings; the output layer's gated input gradient
# took 0.118 ms for 134 MB), and four loads in flight in the gradient
# norm's first pass (294 MB at 2.1 TB/s), and `wide` tiles of 128 × 64
# for static Aᵀ·B products (the weight gradients; from the nineteenth
# session's per-dispatch figures), and `matmul_thin` for products with a
# side of at most 16 and long others (the 10-wide output layer's forward
# product and weight gradient). This build against the one
# before (.dev/bin/sparsetrain-old: copy a build of bf10fce there after
# kit.sh), each step with its per-dispatch profile, then the kernel tests
# one process each (kernels-each.sh) with what is left: the twentieth
# session's run of that binary stalled, and this session adds a test to
# it. Then (twenty-second session) ResNet-20 with BatchNorm pairs and
# implicit convolutions on the GPU; (twenty-third) BatchNorm finals in a
# tree, implicit operands in fours. Sourced by run.sh; `kit.sh --tests matmul`, BUDGET=540.
rm -f "${SPARSETRAIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsetrain}/matmul-variant.tsv"
OLD="$BIN/sparsetrain-old"
T="bench train --model 8192-8192 --batch 2048 --keeps 0.1 --warmup 2 --runs 5"
step 01-f32 30 env SPARSETRAIN_PROFILE=dispatches "$ST" $T
[ -x "$OLD" ] && step 01b-f32-old 30 env SPARSETRAIN_PROFILE=dispatches "$OLD" $T
step 02-mixed 30 env SPARSETRAIN_PROFILE=dispatches "$ST" $T --precision mixed
[ -x "$OLD" ] && step 02b-mixed-old 30 env SPARSETRAIN_PROFILE=dispatches "$OLD" $T --precision mixed
# `matmul_thin` for the output layer's forward product and weight
# gradient (this session's `thin_rule`) against the device's tile variant,
# in the step and alone (every layout).
step 04-f32-thin-off 30 env SPARSETRAIN_THIN=off SPARSETRAIN_PROFILE=dispatches "$ST" $T
step 04b-matmul-thin 60 "$ST" bench matmul --sizes 16 --shapes 2048x10x8192,10x8192x2048 --no-mlp-shapes \
    --variants shared,wide,thin --min-runs 3 --max-runs 3 --budget 0.3
# Every static product on one tile (each product's time per tile, for
# the rule): 128 × 128 was the rule for all of them before.
step 03-f32-tile128x128 30 env SPARSETRAIN_WIDE_TILE=128x128 SPARSETRAIN_PROFILE=dispatches "$ST" $T
step 03b-f32-tile128x64 30 env SPARSETRAIN_WIDE_TILE=128x64 SPARSETRAIN_PROFILE=dispatches "$ST" $T
step 03c-f32-tile64x128 30 env SPARSETRAIN_WIDE_TILE=64x128 SPARSETRAIN_PROFILE=dispatches "$ST" $T
# Twenty-second session: BatchNorm and residual sums in pairs (the default), and
# convolutions reading X in place on GPUs (SPARSETRAIN_IMPLICIT=on:
# `shared`/`wide` element loaders, no im2col or col2im, and the sparse
# step's convolutions in pairs) against im2col's columns (the default on
# GPUs); ResNet-20 dense and keep 0.1, with the per-kernel profile of
# each, and each way with pairs off.
C="bench train --model resnet20 --batch 128 --keeps 0.1 --warmup 1 --runs 3"
step 05-resnet20-columns 45 env SPARSETRAIN_IMPLICIT=off SPARSETRAIN_PROFILE=kernels "$ST" $C
step 05a-resnet20-columns-unpaired 45 env SPARSETRAIN_IMPLICIT=off SPARSETRAIN_PAIRS=off "$ST" $C
step 05b-resnet20-implicit 45 env SPARSETRAIN_IMPLICIT=on SPARSETRAIN_PROFILE=kernels "$ST" $C
step 05c-resnet20-implicit-unpaired 45 env SPARSETRAIN_IMPLICIT=on SPARSETRAIN_PAIRS=off "$ST" $C
# Twenty-third session: implicit operands read in fours (the default) against
# one by one, and the ResNet-20 step of the old build (BatchNorm finals one
# thread per channel, no pairs of finals or gathers) for the finals' tree.
step 05d-resnet20-implicit-quads-off 45 env SPARSETRAIN_IMPLICIT=on SPARSETRAIN_IMPLICIT_QUADS=off "$ST" $C
[ -x "$OLD" ] && step 05e-resnet20-columns-old 45 env SPARSETRAIN_PROFILE=kernels "$OLD" $C
# The default: the path the adapter's probe chose (ops::autotune_conv; the
# variant cache removed above, so it probes; the device line says which).
step 05f-resnet20-auto 45 "$ST" $C
step 01c-f32-again 30 "$ST" $T
[ -x "$OLD" ] && step 01d-f32-old-again 30 "$OLD" $T
. "$(dirname "${BASH_SOURCE[0]}")/kernels-each.sh"
