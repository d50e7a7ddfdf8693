#!/usr/bin/env bash
# Install the Debian packages the build, the tests and the demo need, only if
# some are missing. Needs root (or sudo) the first time.
set -euo pipefail

pkgs=(
    # QEMU's build
    ninja-build pkgconf libglib2.0-dev zlib1g-dev libfdt-dev libpixman-1-dev
    libslirp-dev flex bison device-tree-compiler python3-venv ccache
    # bindgen for the Rust bindings (Debian 12's 0.60 is enough for QEMU 10.2)
    bindgen libclang-dev
    # firmware: SeaBIOS, iPXE option ROMs, kvmvapic/linuxboot/qboot; UEFI
    # for arm virt (the functional tests' ACPI/VIOT cells)
    seabios ipxe-qemu qemu-system-data qemu-efi-aarch64
)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
