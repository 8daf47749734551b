# Twentieth session's last call: issue 9's figures with this session's
# changes (dense steps assign their gradients; `coop` tiled's next-slice
# chunks in named registers and its own shape rule, eight subgroups in K
# slices of 16 for big products), the other models, the MNIST recipe in
# both precisions, then the whole test suite. Sourced by run.sh
# (BUDGET=420).
rm -f "${SPARSETRAIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsetrain}/matmul-variant.tsv"
T="$ST bench train --model 8192-8192 --batch 2048 --keeps 0.1 --warmup 2 --runs 5"
step 03-mlp8192-f32 40 env SPARSETRAIN_PROFILE=dispatches $T
step 04-mlp8192-mixed 40 env SPARSETRAIN_PROFILE=dispatches $T --precision mixed
step 05-mlp4096 30 "$ST" bench train --model 4096-4096 --batch 256 --keeps 0.1,0.05 --runs 5
step 09-cnn 30 "$ST" bench train --model resnet20 --model lenet5 --keeps 0.25,0.1 --batch 128 --runs 3 --warmup 1
step 01-matmul-4096 120 "$ST" bench matmul --sizes 4096 --no-mlp-shapes --variants shared,wide,coop --min-runs 3 --max-runs 3 --budget 0.3
R="--dataset mnist --data-dir $DATA --keep 0.1 --hidden 1024,1024 --epochs 10 --batch 128 --lr 0.05 --score-lr 0.05"
R="$R --finetune-epochs 2 --finetune-lr 0.01 --select-on 20000"
[ -d "$DATA" ] && step 06-mnist-f32 40 "$ST" train $R
[ -d "$DATA" ] && step 07-mnist-mixed 40 "$ST" train $R --precision mixed
export SPARSETRAIN_REQUIRE_COOP=1
for t in "$BIN"/*-*; do
    [ -e "$t" ] || continue
    case "$(basename "$t")" in kernels-* | sparsetrain-old) continue ;; esac
    step "test-$(basename "$t")" 60 "$t" --test-threads 8
done
for t in "$BIN"/kernels-*; do
    [ -e "$t" ] && step "test-$(basename "$t")" 300 env SPARSETRAIN_TEST_TRACE=1 "$t" --test-threads 16
done
unset SPARSETRAIN_REQUIRE_COOP
