# Nineteenth session: why `wide` runs its 64 × 64 tiles (every kept
# product) 3-6× slower than 128 × 128 on an H100. Every slow shape loads
# a slice in more than one vec4 per thread, which `wide` held in a private
# array indexed by its loop counter (clamped by naga). This build holds
# them in named registers; .dev/bin/sparsetrain-old is the build before.
# Each against bounds checks off in the matmuls. Sourced by run.sh.
rm -f "${SPARSETRAIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsetrain}/matmul-variant.tsv"
OLD="$BIN/sparsetrain-old"
M="bench matmul --sizes 4096 --shapes 2048x820x820 --no-mlp-shapes --variants wide --layouts nn,nt --min-runs 3 --max-runs 3 --budget 0.3"
[ -x "$OLD" ] && step 01-wide-old 60 "$OLD" $M
step 01b-wide-new 60 "$ST" $M
step 01c-wide-new-unchecked 60 env SPARSETRAIN_SHADER_CHECKS=matmul-unchecked "$ST" $M
[ -x "$OLD" ] && step 01d-wide-old-unchecked 60 env SPARSETRAIN_SHADER_CHECKS=matmul-unchecked "$OLD" $M
T="bench train --model 8192-8192 --batch 2048 --keeps 0.1 --warmup 2 --runs 5"
step 03-mlp8192-f32-new 40 env SPARSETRAIN_PROFILE=dispatches "$ST" $T
step 03b-mlp8192-f32-new-unchecked 40 env SPARSETRAIN_SHADER_CHECKS=matmul-unchecked SPARSETRAIN_PROFILE=dispatches "$ST" $T
[ -x "$OLD" ] && step 03c-mlp8192-f32-old 40 env SPARSETRAIN_PROFILE=kernels "$OLD" $T
step 04-mlp8192-mixed-new 40 env SPARSETRAIN_PROFILE=kernels "$ST" $T --precision mixed
step 04b-mlp8192-mixed-new-unchecked 40 env SPARSETRAIN_SHADER_CHECKS=matmul-unchecked SPARSETRAIN_PROFILE=kernels "$ST" $T --precision mixed
step 05-mlp4096-new 30 "$ST" bench train --model 4096-4096 --batch 256 --keeps 0.1,0.05 --runs 5
