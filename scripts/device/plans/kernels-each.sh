# The kernel tests one at a time, each in a process of its own with a
# limit of its own, in name order: to find what stalled the twentieth
# session's run on an H100, where none of the binary's GPU tests reported
# within 300 s on 16 threads (not even the first, which run no matmul;
# BENCHMARKS.md). Each test's output, exit status and time land in
# res/each-NAME.txt, so a test that hangs shows as rc 124 and the rest
# still run. The device-free tests come first (a binary that cannot even
# list or run those is broken elsewhere), then one cheap GPU test with the
# Vulkan loader's error log, then every other test. Sourced by run.sh
# (BUDGET=500 or more; `kit.sh --tests matmul` packs only this binary).
export SPARSETRAIN_REQUIRE_COOP=1 SPARSETRAIN_TEST_TRACE=1
for t in "$BIN"/kernels-*; do
    [ -e "$t" ] || continue
    "$t" --list 2> /dev/null | sed -n 's/: test$//p' > "$RES/kernel-tests.txt"
    step each-00-list-and-free 30 "$t" --test-threads 1 lazy_state_is_send_and_sync runs_test_passes refuses_bad_shapes
    step each-01-accuracy-logged 60 env VK_LOADER_DEBUG=error \
        "$t" --exact accuracy::accuracy_count_matches_reference --test-threads 1 --nocapture
    while read -r name; do
        case "$name" in accuracy::accuracy_count_matches_reference) continue ;; esac
        # The long matmul tests compile hundreds of pipelines: 150 s each.
        limit=60
        case "$name" in matmul*) limit=150 ;; esac
        step "each-${name//::/-}" "$limit" "$t" --exact "$name" --test-threads 1
    done < "$RES/kernel-tests.txt"
done
unset SPARSETRAIN_REQUIRE_COOP SPARSETRAIN_TEST_TRACE
