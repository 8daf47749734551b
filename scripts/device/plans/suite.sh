# The whole test suite on the device, cooperative matrices required
# (SPARSETRAIN_REQUIRE_COOP: the mixed-precision tests fail, not skip).
# Sourced by scripts/device/run.sh (`step`, $BIN).
#
# The kernel tests compile several hundred pipelines (most matmul cases
# are a shape of their own), which NVIDIA's driver takes 0.2-2.8 s each to
# build on a CPU core: on an H100 matmul_matches_reference alone ran 86 s,
# and the four long matmul tests at 4 threads passed 150 s (seventeenth
# session). So they run first, on 8 threads, with a limit of their own,
# and with SPARSETRAIN_TEST_TRACE each run's compile and round trips are
# timed apart in the log.
export SPARSETRAIN_REQUIRE_COOP=1
for t in "$BIN"/kernels-*; do
    [ -e "$t" ] || continue
    step "test-$(basename "$t")" 300 env SPARSETRAIN_TEST_TRACE=1 "$t" --test-threads 8
done
for t in "$BIN"/*-*; do
    [ -e "$t" ] || continue
    case "$(basename "$t")" in kernels-*) continue ;; esac
    step "test-$(basename "$t")" 150 "$t" --test-threads 4
done
unset SPARSETRAIN_REQUIRE_COOP
