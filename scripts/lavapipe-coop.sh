#!/usr/bin/env bash
# Runs a command on lavapipe with cooperative matrices, so that the
# mixed-precision matmuls (`coop`) run on a machine without a GPU.
#
# Debian 12's lavapipe (Mesa 22.3) has no cooperative matrices; Mesa's from
# Debian 13 backports (26.x) offers 8 × 8 × 8 ones of f16 inputs with f32
# accumulation on CPUs with AVX2, which `matmul_coop` builds for (its
# 16 × 16 pieces are GPUs' tensor cores). That Mesa needs Debian 13's C
# library, so the script unpacks it and its libraries into a folder (no
# package is installed; apt's lists there too) and runs the command through
# that folder's dynamic loader, with the Vulkan loader pointed at its ICD.
#
#   scripts/lavapipe-coop.sh                # the matmul kernel tests and the paired
#                                           # mixed sparse step, coop required
#   scripts/lavapipe-coop.sh --if-available # the same, or say NOT RUN and succeed
#                                           # where the packages or AVX2 are missing
#   scripts/lavapipe-coop.sh target/release/sparsetrain info
#
# Where: $SPARSETRAIN_MESA_DIR (default ~/.cache/sparsetrain/mesa-coop).
# Test binaries: cargo test --release --no-run, then pass the binary's
# path (cargo itself runs outside the loader). scripts/test.sh ends with the
# --if-available form, so CI runs it too; it downloads about 70 MB of
# packages once, and only speaks for correctness (lavapipe's cooperative
# matrices are emulated; nothing about tensor-core speed).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${SPARSETRAIN_MESA_DIR:-$HOME/.cache/sparsetrain/mesa-coop}"
ROOT="$DIR/root"
ICD="$DIR/lvp_icd.json"

OPTIONAL=0
if [ "${1:-}" = "--if-available" ]; then
    OPTIONAL=1
    shift
fi
# Where the mixed-precision tests cannot run here: say so, and fail unless
# they were only asked for where available.
not_run() {
    echo "NOT RUN coop tests on Mesa 26's lavapipe: $*" >&2
    exit $((1 - OPTIONAL))
}

setup() {
    echo "== unpacking Debian 13's Mesa into $DIR"
    mkdir -p "$DIR/apt/lists/partial" "$DIR/apt/cache/archives/partial" "$DIR/debs" "$ROOT"
    cat >"$DIR/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian trixie main
deb http://deb.debian.org/debian trixie-backports main
EOF
    APT=(-o "Dir::Etc::SourceList=$DIR/apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$DIR/apt/lists" -o "Dir::Cache=$DIR/apt/cache" -o "APT::Sandbox::User=root")
    apt-get "${APT[@]}" -qq update
    # Mesa from backports, and what it links that Debian 12 has too old.
    PKGS=(mesa-vulkan-drivers/trixie-backports libc6 libstdc++6 libgcc-s1 libllvm19 libelf1t64
        libdisplay-info2 libpng16-16t64 libdrm2 libdrm-amdgpu1 libwayland-client0 libxcb-dri3-0
        libxcb-present0 libxcb1 libzstd1 libffi8 libedit2 libz3-4 libxml2 libtinfo6 libbsd0 libmd0
        libicu76 liblzma5 zlib1g libexpat1 libxcb-randr0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0
        libxshmfence1 libx11-xcb1 libx11-6 libxau6 libxdmcp6)
    (cd "$DIR/debs" && apt-get "${APT[@]}" -qq download "${PKGS[@]}")
    for deb in "$DIR"/debs/*.deb; do
        dpkg-deb -x "$deb" "$ROOT"
    done
    LVP="$ROOT/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"
    [ -f "$LVP" ] || { echo "lavapipe is missing from the unpacked Mesa" >&2; exit 1; }
    printf '{"file_format_version": "1.0.1", "ICD": {"library_path": "%s", "api_version": "1.3.0"}}\n' "$LVP" >"$ICD"
}
if [ ! -f "$ICD" ]; then
    # In a subshell with errexit of its own (a subshell on the left of ||
    # would ignore it): a failed step stops before the ICD file is written,
    # so a later run tries again.
    set +e
    (
        set -e
        setup
    )
    rc=$?
    set -e
    [ "$rc" = 0 ] || not_run "the packages could not be fetched or unpacked"
fi

export VK_ICD_FILENAMES="$ICD"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR"
LIBS="$ROOT/usr/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu"
run() { "$ROOT/usr/lib64/ld-linux-x86-64.so.2" --library-path "$LIBS" "$@"; }

if [ "$#" -gt 0 ]; then
    run "$@"
    exit
fi
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet
if ! INFO=$(run "$TARGET/release/sparsetrain" info 2>&1); then
    # A crash is a failure; an adapter that does not open is "not here".
    if echo "$INFO" | grep -q "panicked"; then
        echo "$INFO" >&2
        exit 1
    fi
    not_run "the adapter did not open: $INFO"
fi
echo "$INFO" | grep -q "^precision: *f32, mixed (" || not_run "$(echo "$INFO" | grep "^precision:")"
BUILT=$(cargo test --release --test kernels --test sparse --no-run 2>&1) || { echo "$BUILT" >&2; exit 1; }
KERNELS=$(echo "$BUILT" | sed -n 's/.*Executable .*(\(.*deps\/kernels-[^)]*\)).*/\1/p' | head -1)
SPARSE=$(echo "$BUILT" | sed -n 's/.*Executable .*(\(.*deps\/sparse-[^)]*\)).*/\1/p' | head -1)
[ -n "$KERNELS" ] && [ -n "$SPARSE" ] || { echo "no kernel or sparse test binary in: $BUILT" >&2; exit 1; }
SPARSETRAIN_REQUIRE_GPU=1 SPARSETRAIN_REQUIRE_COOP=1 run "$KERNELS" matmul
# A mixed-precision sparse step with pairs against one without, bit for bit;
# again with its output layer's thin products on `matmul_thin`, as GPUs
# run them in mixed precision (`thin_rule`; lavapipe never by the rule).
SPARSETRAIN_REQUIRE_GPU=1 SPARSETRAIN_REQUIRE_COOP=1 run "$SPARSE" paired_products
SPARSETRAIN_THIN=on SPARSETRAIN_REQUIRE_GPU=1 SPARSETRAIN_REQUIRE_COOP=1 run "$SPARSE" paired_products
