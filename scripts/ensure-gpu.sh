#!/usr/bin/env bash
# Installs Mesa's software Vulkan driver (lavapipe) when no Vulkan device is
# visible, so that sparsetrain runs on machines without a GPU. Needs root (or
# sudo) and a Debian/Ubuntu system; elsewhere it only says what to install.
set -euo pipefail

have_vulkan_icd() {
    # A Vulkan driver registers an ICD manifest (lavapipe's is lvp_icd.*.json)
    # and the loader must be installed. No `| grep -q` here: under pipefail
    # the early exit of grep would fail the pipeline.
    local icds loader
    icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null || true)
    loader=$(ldconfig -p 2>/dev/null || true)
    [ -n "$icds" ] && [[ "$loader" == *libvulkan.so.1* ]]
}

if have_vulkan_icd; then
    exit 0
fi

echo "ensure-gpu: no Vulkan driver found; installing mesa-vulkan-drivers (lavapipe)" >&2
if ! command -v apt-get >/dev/null; then
    echo "ensure-gpu: apt-get not available; install a Vulkan driver for your system (Mesa's lavapipe works without a GPU)" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null
have_vulkan_icd || { echo "ensure-gpu: installation did not provide a Vulkan driver" >&2; exit 1; }
