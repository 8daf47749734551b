# Twentieth session's first call: `coop` tiled with its next-slice chunks
# in named registers (this build) against the build before
# (.dev/bin/sparsetrain-old), `coop_mode_rule` against `coop` direct
# everywhere, and the dense f32 step's narrow output layer under other
# splits of K (SPARSETRAIN_GPU_SPLITS) and `shared` for a K of a handful
# (SPARSETRAIN_WIDE_MIN_K). Sourced by run.sh (BUDGET=240). Neither
# knob gained (BENCHMARKS.md, twentieth session): both were removed after
# this call, so those steps now run the defaults.
rm -f "${SPARSETRAIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsetrain}/matmul-variant.tsv"
OLD="$BIN/sparsetrain-old"
M="bench matmul --sizes 4096 --no-mlp-shapes --variants coop --min-runs 3 --max-runs 3 --budget 0.3"
step 01-coop-new 45 "$ST" $M
[ -x "$OLD" ] && step 01b-coop-old 45 "$OLD" $M
T="bench train --model 8192-8192 --batch 2048 --keeps 0.1 --warmup 2 --runs 5"
step 02-mixed-rule 30 env SPARSETRAIN_PROFILE=dispatches "$ST" $T --precision mixed
step 02b-mixed-direct 30 env SPARSETRAIN_COOP=direct SPARSETRAIN_PROFILE=kernels "$ST" $T --precision mixed
[ -x "$OLD" ] && step 02c-mixed-old-rule 30 env SPARSETRAIN_PROFILE=kernels "$OLD" $T --precision mixed
step 03-f32 30 env SPARSETRAIN_PROFILE=dispatches "$ST" $T
step 03b-f32-splits-1024-128 30 env SPARSETRAIN_GPU_SPLITS=1024/128 SPARSETRAIN_PROFILE=dispatches "$ST" $T
step 03c-f32-splits-2048-64 30 env SPARSETRAIN_GPU_SPLITS=2048/64 SPARSETRAIN_PROFILE=dispatches "$ST" $T
step 03d-f32-min-k-64 30 env SPARSETRAIN_WIDE_MIN_K=64 SPARSETRAIN_PROFILE=dispatches "$ST" $T
step 03e-f32-both 30 env SPARSETRAIN_GPU_SPLITS=1024/128 SPARSETRAIN_WIDE_MIN_K=64 SPARSETRAIN_PROFILE=dispatches "$ST" $T
step 03f-f32-again 30 "$ST" $T
