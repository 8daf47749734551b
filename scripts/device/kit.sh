#!/usr/bin/env bash
# Prepares what a lent GPU machine needs (see ../../BENCHMARKS.md and the
# device section of the README): release binaries and test executables,
# stripped and packed with xz, the Vulkan loader package and the PyTorch peer
# from ../shared/device, and the MNIST files, all in .dev/ (which git
# ignores through .git/info/exclude). The device tool sends the checkout;
# name `.dev` in its `carry`. Then on the device:
#
#   bash scripts/device/run.sh scripts/device/plans/figures.sh
#
# Usage: scripts/device/kit.sh [--tests all|matmul|none]
#   all (default): every test executable that uses a device;
#   matmul: only the kernel tests; none: only the binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
TESTS=all
if [ "${1:-}" = "--tests" ]; then TESTS="${2:?--tests needs all, matmul or none}"; fi
case "$TESTS" in all | matmul | none) ;; *) echo "kit.sh: --tests takes all, matmul or none" >&2; exit 2 ;; esac
SHARED="${SPARSETRAIN_SHARED:-../shared}"

EXCLUDE=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE")"
grep -qx '.dev/' "$EXCLUDE" 2> /dev/null || echo '.dev/' >> "$EXCLUDE"

echo "== building"
cargo build --release
LOG=$(mktemp)
if [ "$TESTS" != none ]; then
    # A failed test build stops here, not later on the device.
    cargo test --release --no-run > "$LOG" 2>&1 || { cat "$LOG"; exit 1; }
    grep Executable "$LOG"
fi

rm -rf .dev/bin && mkdir -p .dev/bin
TARGET="${CARGO_TARGET_DIR:-target}"
cp "$TARGET/release/sparsetrain" .dev/bin/
# The CLI tests run the binary at the absolute path it was built at.
realpath "$TARGET/release/sparsetrain" > .dev/binary-path
# The built binary's checksum: run.sh leaves the binary at that path alone
# only where it is this very build (the machine that built it).
sha256sum "$TARGET/release/sparsetrain" | cut -d' ' -f1 > .dev/binary-sha
rm -f .dev/build-host
if [ "$TESTS" != none ]; then
    # Test executables by their target name; the device-free ones (naga,
    # structure, plot, reader fuzzing) run on the CPU machine.
    grep -o '([^)]*release/deps/[^)]*)' "$LOG" | tr -d '()' | while read -r p; do
        name=$(basename "$p")
        case "$name" in naga-* | structure-* | plot-* | fuzz_readers-*) continue ;; esac
        if [ "$TESTS" = matmul ] && [[ "$name" != kernels-* ]]; then continue; fi
        cp "$p" .dev/bin/
    done
fi
rm -f "$LOG"
for f in .dev/bin/*; do strip "$f" && xz -T2 -6 "$f"; done

for f in "$SHARED"/device/libvulkan1_*.deb "$SHARED"/device/torch_peer.py; do
    [ -e "$f" ] && cp "$f" .dev/
done
if [ -d "$SHARED/data/mnist" ]; then
    mkdir -p .dev/data && cp -r "$SHARED/data/mnist" .dev/data/
fi
du -sh .dev
echo "== .dev is ready (the device tool's carry takes at most 64 MiB)"
