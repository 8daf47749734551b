# A short first call: whether pairs (eighteenth session) help the
# 784-8192-8192-10 step on a GPU, per dispatch, and whether the pair tests
# pass there. Sourced by scripts/device/run.sh (about 2.5 minutes on an
# H100). Each comparison in separate processes, as figures.sh does.
rm -f "${SPARSETRAIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsetrain}/matmul-variant.tsv"
T="$ST bench train --model 8192-8192 --batch 2048 --keeps 0.1 --warmup 2 --runs 5"
step 03-mlp8192-f32 60 env SPARSETRAIN_PROFILE=kernels $T
step 03e-mlp8192-f32-pairs-off 60 env SPARSETRAIN_PAIRS=off SPARSETRAIN_PROFILE=kernels $T
step 03h-mlp8192-f32-again 60 $T
step 03d-mlp8192-f32-kept-splits 60 env SPARSETRAIN_KEPT_SPLITS=all SPARSETRAIN_PROFILE=kernels $T
step 03i-mlp8192-f32-dispatches 60 env SPARSETRAIN_PROFILE=dispatches $T
step 03j-mlp8192-f32-dispatches-pairs-off 60 env SPARSETRAIN_PAIRS=off SPARSETRAIN_PROFILE=dispatches $T
step 04-mlp8192-mixed 60 env SPARSETRAIN_PROFILE=kernels $T --precision mixed
step 04b-mlp8192-mixed-pairs-off 60 env SPARSETRAIN_PAIRS=off SPARSETRAIN_PROFILE=kernels $T --precision mixed
step 04i-mlp8192-mixed-dispatches 60 env SPARSETRAIN_PROFILE=dispatches $T --precision mixed
step 05-mlp4096 60 "$ST" bench train --model 4096-4096 --batch 256 --keeps 0.1,0.05 --runs 5
step 05b-mlp4096-pairs-off 60 env SPARSETRAIN_PAIRS=off "$ST" bench train --model 4096-4096 --batch 256 --keeps 0.1,0.05 --runs 5
export SPARSETRAIN_REQUIRE_COOP=1
for t in "$BIN"/kernels-*; do
    [ -e "$t" ] && step "test-$(basename "$t")-pair" 120 env SPARSETRAIN_TEST_TRACE=1 "$t" pair --test-threads 8
done
for t in "$BIN"/sparse-*; do
    [ -e "$t" ] && step "test-$(basename "$t")" 120 "$t" --test-threads 4
done
unset SPARSETRAIN_REQUIRE_COOP
