# Twentieth session's second call: `coop` tiled on eight subgroups in K
# slices of 16 (tiles of 128 × 256 and 256 × 128, `coop_tiled_depth`)
# against the rule's four in slices of 32, in `bench matmul` and in the
# mixed dense step (SPARSETRAIN_COOP_SHAPE); and the dense f32 step with
# its gradients assigned (this build) against the build before
# (.dev/bin/sparsetrain-old). Sourced by run.sh (BUDGET=150).
rm -f "${SPARSETRAIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsetrain}/matmul-variant.tsv"
OLD="$BIN/sparsetrain-old"
step 01-coop 60 "$ST" bench matmul --sizes 4096 --no-mlp-shapes --variants coop --min-runs 3 --max-runs 3 --budget 0.3
T="bench train --model 8192-8192 --batch 2048 --keeps 0.1 --warmup 2 --runs 5"
step 02-mixed 30 env SPARSETRAIN_PROFILE=kernels "$ST" $T --precision mixed
step 02b-mixed-4x2x4 30 env SPARSETRAIN_COOP_SHAPE=4x2x4 SPARSETRAIN_PROFILE=dispatches "$ST" $T --precision mixed
step 02c-mixed-4x4x2 30 env SPARSETRAIN_COOP_SHAPE=4x4x2 SPARSETRAIN_PROFILE=kernels "$ST" $T --precision mixed
step 03-f32 30 env SPARSETRAIN_PROFILE=dispatches "$ST" $T
[ -x "$OLD" ] && step 03b-f32-old 30 env SPARSETRAIN_PROFILE=kernels "$OLD" $T
step 03c-f32-again 30 "$ST" $T
