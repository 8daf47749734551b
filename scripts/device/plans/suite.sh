# The whole test suite on the device, cooperative matrices required
# (SPARSETRAIN_REQUIRE_COOP: the mixed-precision tests fail, not skip).
# Sourced by scripts/device/run.sh (`step`, $BIN).
export SPARSETRAIN_REQUIRE_COOP=1
for t in "$BIN"/*-*; do
    step "test-$(basename "$t")" 150 "$t" --test-threads 4
done
unset SPARSETRAIN_REQUIRE_COOP
