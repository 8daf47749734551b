#!/usr/bin/env bash
# Runs a plan of timed steps on a lent GPU machine, from the kit that
# scripts/device/kit.sh put in .dev/: sets up the Vulkan loader, finds the
# NVIDIA ICD, unpacks the binaries into /tmp/b, then sources PLAN, whose
# lines call `step NAME SECONDS COMMAND...`. Each step's output goes to
# /tmp/res/NAME.txt with its exit status and time, and after every step
# /tmp/res is packed into $OUT/res.tgz: the device tool returns a few files
# at most, and a run cut short still returns what it finished.
#
#   BUDGET=520 bash scripts/device/run.sh scripts/device/plans/figures.sh
#
# BUDGET (seconds, default 520) bounds the whole plan: a step is cut at what
# is left, and skipped under 15 s. In a plan: $ST is the sparsetrain binary,
# $BIN the folder of test executables, $DATA the MNIST folder.
set -u
PLAN="${1:?usage: run.sh PLAN}"
T0=$(date +%s)
BUDGET=${BUDGET:-520}
ROOT=$(pwd)
OUT=${OUT:-/tmp/out}
RES=/tmp/res
BIN=/tmp/b
DATA="$ROOT/.dev/data/mnist"
# A warm machine keeps /tmp between calls: nothing of an earlier kit or
# plan may run or be returned again.
rm -rf "$RES" "$BIN"
mkdir -p "$RES" "$BIN" "$OUT"
pack() { tar czf "$OUT/res.tgz" -C /tmp res; }
left() { echo $((BUDGET - ($(date +%s) - T0))); }

for f in "$ROOT"/.dev/bin/*.xz; do
    b="$BIN/$(basename "$f" .xz)"
    xz -dc "$f" > "$b" && chmod +x "$b"
done
ST="$BIN/sparsetrain"
# The CLI tests run the binary at the absolute path it was built at
# (kit.sh wrote it down). Replaced on every call (an earlier call's binary
# may still be there), except where that path holds the very build kit.sh
# packed (the machine that built it). Not by host name: the lent machine
# was called `vm` like the one that built (seventeenth session).
built=$(cat "$ROOT/.dev/binary-path" 2> /dev/null || true)
want=$(cat "$ROOT/.dev/binary-sha" 2> /dev/null || true)
if [ -n "$built" ] && { [ -z "$want" ] || [ "$(sha256sum "$built" 2> /dev/null | cut -d' ' -f1)" != "$want" ]; }; then
    mkdir -p "$(dirname "$built")" && cp -f "$ST" "$built"
fi

deb=$(ls "$ROOT"/.dev/libvulkan1_*.deb 2>/dev/null | head -1)
if [ -n "$deb" ] && ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
    dpkg -x "$deb" / && ldconfig
fi
export XDG_RUNTIME_DIR=/tmp/xdg
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
export SPARSETRAIN_BACKEND=vulkan SPARSETRAIN_REQUIRE_GPU=1

# The ICD file has moved between machines (fifth session:
# /usr/local/nvidia/share/vulkan/icd.d; thirteenth: /usr/share/vulkan/icd.d):
# try the loader's own search, then every nvidia ICD file found, then one
# written for the driver's GLX or EGL library.
if ! "$ST" info > "$RES/00-info.txt" 2>&1; then
    find / -xdev \( -name '*nvidia*icd*.json' -o -name 'libGLX_nvidia.so*' -o -name 'libEGL_nvidia.so*' \) \
        2> /dev/null > "$RES/00-icd-search.txt"
    found=0
    for f in $(grep '\.json$' "$RES/00-icd-search.txt"); do
        export VK_DRIVER_FILES=$f
        if "$ST" info > "$RES/00-info.txt" 2>&1; then found=1; break; fi
    done
    if [ $found = 0 ]; then
        for lib in $(grep -E 'lib(GLX|EGL)_nvidia\.so' "$RES/00-icd-search.txt"); do
            printf '{"file_format_version":"1.0.1","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$lib" > /tmp/nv_icd.json
            export VK_DRIVER_FILES=/tmp/nv_icd.json
            if "$ST" info > "$RES/00-info.txt" 2>&1; then found=1; break; fi
        done
    fi
    # None worked: leave the loader's own search, and 00-info.txt says why.
    [ $found = 1 ] || unset VK_DRIVER_FILES
fi
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}" >> "$RES/00-info.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,utilization.gpu --format=csv >> "$RES/00-info.txt" 2>&1
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv >> "$RES/00-info.txt" 2>&1
pack

step() {
    local name=$1 max=$2 l s
    shift 2
    l=$(left)
    if [ "$l" -lt 15 ]; then
        echo "SKIPPED (budget)" > "$RES/$name.txt"
        return
    fi
    [ "$max" -gt "$l" ] && max=$l
    s=$(date +%s)
    timeout -k 3 "$max" "$@" > "$RES/$name.txt" 2>&1
    echo "== rc $? in $(($(date +%s) - s)) s (limit $max)" >> "$RES/$name.txt"
    echo "$name done at $(($(date +%s) - T0)) s" >> "$RES/progress.txt"
    pack
}

# shellcheck source=/dev/null
source "$PLAN"
echo "total $(($(date +%s) - T0)) s" >> "$RES/progress.txt"
pack
cat "$RES/progress.txt"
