#!/usr/bin/env bash
# Build the functional-test guest: a Debian trixie kernel and a small
# initramfs of our own (busybox + the kernel's virtio modules + /init).
#
#   scripts/guest/build-image.sh [OUTDIR [ARCH]]
#
# ARCH is amd64 (the default; q35) or arm64 (the arm virt machine); it may
# also come from the environment as GUEST_ARCH. OUTDIR defaults to
# build/guest for amd64 and build/guest-arm64 for arm64 (an empty OUTDIR
# argument means the default).
#
# Nothing is installed on the host: the two .deb packages are fetched with
# `apt-get download` through a private sources list and apt state directory
# (the machine's apt configuration is never read for sources nor changed),
# unpacked with `dpkg-deb -x` under OUTDIR, and the initramfs is packed by
# mkinitramfs.py. Downloads are cached in ~/.cache/virtio-iommu-rs/guest.
# A stamp records the inputs; a second run with the same inputs does nothing.
#
# Outputs: OUTDIR/vmlinuz, OUTDIR/initramfs.gz, OUTDIR/image.env (facts the
# test harness reads: kernel release, package versions). For arm64 the
# kernel is OUTDIR/Image (uncompressed, what QEMU's -kernel takes on arm)
# and OUTDIR/vmlinuz is a symlink to it, so both arches share the names.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ARCH=${2:-${GUEST_ARCH:-amd64}}
case "$ARCH" in
    amd64) out=${1:-$root/build/guest} ;;
    arm64) out=${1:-$root/build/guest-$ARCH} ;;
    *) echo "build-image: unknown ARCH '$ARCH' (amd64 or arm64)" >&2; exit 1 ;;
esac
cache=${VIOMMU_CACHE:-$HOME/.cache/virtio-iommu-rs}/guest

# Pinned packages. Debian 12's kernel (6.1) lacks CONFIG_VIRTIO_IOMMU; trixie's
# cloud kernel has it as a module plus CONFIG_ACPI_VIOT=y. The sha256 values
# are the ones trixie's signed Packages index lists: apt checks the download
# against the index, and we check the cached file against the same value so a
# cache hit needs no network at all. When the archive drops this kernel
# (Debian keeps only the current point release), bump the versions, both
# ABIs and all four sha256 values together, from
# `apt-cache show linux-image-<abi>-cloud-<arch> busybox-static` on trixie
# (for arm64, a private index read with -o APT::Architecture=arm64
# -o APT::Architectures=arm64, as fetch() below does). Both arches use the
# same kernel and busybox versions; only the .debs' sha256 differ.
KERNEL_VERSION=6.12.107-1
BUSYBOX_PKG=busybox-static
BUSYBOX_VERSION=1:1.37.0-6+b9
case "$ARCH" in
    amd64)
        KERNEL_ABI=6.12.107+deb13-cloud-amd64
        KERNEL_SHA256=04434ff520f860423eafe4203d986a35682ce73c2f71baa39e988ca0da93ac91
        BUSYBOX_SHA256=598a3fd92bdafc34cd81196b2952ad36e910e47a4ecf162f8ce5e8e262598e53
        ;;
    arm64)
        # Same config choices that matter here: CONFIG_VIRTIO_IOMMU=m,
        # virtio-pci and the virt machine's PCIe host (pci-host-generic)
        # built in, virtio-blk/-net modules. Its /boot/vmlinuz is a plain,
        # uncompressed arm64 Image (checked below). Note its default DMA
        # domain is strict (CONFIG_IOMMU_DEFAULT_DMA_STRICT), amd64's lazy.
        KERNEL_ABI=6.12.107+deb13-cloud-arm64
        KERNEL_SHA256=a1bbfc22454e984feba6353f957152ef416728b627ec0cf94d3ac04b18c14d84
        BUSYBOX_SHA256=c833be48abfa16bc19c4966ec93e289ff1ce5d2f1476cad3a57bd105378cd15c
        ;;
esac
KERNEL_PKG=linux-image-$KERNEL_ABI
# busybox-static from the same suite: one private index serves both packages.
SUITE=trixie

# The modules /init loads. mkinitramfs.py adds their dependencies (read from
# each module's own .modinfo, as the package ships no modules.dep) and orders
# them; virtio_iommu comes first on purpose, see init.
MODULES="virtio_iommu virtio_blk virtio_net"
# arm virt's virtio-mmio transports (devices behind virtio-iommu-rs there).
[ "$ARCH" = arm64 ] && MODULES="$MODULES virtio_mmio"

log() { echo "build-image: $*" >&2; }

# deb_file PKG VERSION: the file name apt-get download gives the package
# (the epoch's colon is written %3a).
deb_file() {
    local arch=$ARCH v=${2//:/%3a}
    echo "${1}_${v}_${arch}.deb"
}
kernel_deb=$cache/$(deb_file "$KERNEL_PKG" "$KERNEL_VERSION")
busybox_deb=$cache/$(deb_file "$BUSYBOX_PKG" "$BUSYBOX_VERSION")

# The stamp covers every input: pinned versions, the arch and the files that
# shape the image. Same stamp and outputs present => nothing to do.
stamp_want=$({ cat "$0" "$here/init" "$here/mkinitramfs.py"; echo "ARCH=$ARCH"; } \
             | sha256sum | cut -d' ' -f1)
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp_want" ] \
        && [ -f "$out/vmlinuz" ] && [ -f "$out/initramfs.gz" ]; then
    log "up to date: $out"
    exit 0
fi

have() { # have FILE SHA256
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

fetch() {
    mkdir -p "$cache"
    if have "$kernel_deb" "$KERNEL_SHA256" && have "$busybox_deb" "$BUSYBOX_SHA256"; then
        log "using cached packages in $cache"
        return 0
    fi
    command -v apt-get >/dev/null || { log "apt-get is needed to fetch the packages"; exit 1; }
    # Same mirror the machine already uses for Debian, different suite.
    local mirror
    mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Origin: Debian' 'Label: Debian' 2>/dev/null \
             | grep -v security | head -n1)
    mirror=${mirror:-http://deb.debian.org/debian/}
    local st="$cache/apt-$ARCH"
    rm -rf "$st"
    mkdir -p "$st/lists/partial" "$st/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SUITE main" >"$st/sources.list"
    # Private everything: sources, lists, cache, no dpkg status (so apt does
    # not look at what the host has installed), ARCH whatever the host is.
    local opts=(-o "Dir::Etc::SourceList=$st/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
                -o "Dir::State::Lists=$st/lists" -o "Dir::Cache=$st/cache"
                -o "Dir::State::status=/dev/null" -o "APT::Sandbox::User=root"
                -o "Acquire::Languages=none" -o "Debug::NoLocking=1"
                -o "APT::Architecture=$ARCH" -o "APT::Architectures::=$ARCH")
    log "updating a private index of Debian $SUITE/$ARCH ($mirror)"
    apt-get "${opts[@]}" -qq update >&2 \
        || { log "could not read Debian $SUITE's index from $mirror"; exit 1; }
    log "downloading $KERNEL_PKG=$KERNEL_VERSION and $BUSYBOX_PKG=$BUSYBOX_VERSION"
    (cd "$cache" && apt-get "${opts[@]}" -qq download \
        "$KERNEL_PKG=$KERNEL_VERSION" "$BUSYBOX_PKG=$BUSYBOX_VERSION") >&2 \
        || { log "download failed: has $SUITE dropped these versions? (see the pins above)"; exit 1; }
    rm -rf "$st"
    # apt verified both against the index; the pins catch an index that
    # moved on to different bytes under the same version.
    have "$kernel_deb" "$KERNEL_SHA256" || { log "REJECTED $kernel_deb: not the pinned sha256"; rm -f "$kernel_deb"; exit 1; }
    have "$busybox_deb" "$BUSYBOX_SHA256" || { log "REJECTED $busybox_deb: not the pinned sha256"; rm -f "$busybox_deb"; exit 1; }
}

fetch

# OUTDIR is wiped and rebuilt: refuse the obviously wrong ones.
case "$(cd "$(dirname "$out")" 2>/dev/null && pwd)/$(basename "$out")" in
    /|//*|"$HOME"|"$root"|"$root/build") log "refusing to use $out as the output directory"; exit 1 ;;
esac
rm -rf "$out"
mkdir -p "$out"
log "unpacking into $out"
dpkg-deb -x "$kernel_deb" "$out/kernel-deb"
dpkg-deb -x "$busybox_deb" "$out/busybox-deb"

moddir=$out/kernel-deb/usr/lib/modules/$KERNEL_ABI
[ -d "$moddir" ] || { log "no $moddir in $KERNEL_PKG"; exit 1; }
kernel=$out/kernel-deb/boot/vmlinuz-$KERNEL_ABI
case "$ARCH" in
    amd64) kimage=vmlinuz; cp "$kernel" "$out/vmlinuz" ;;
    arm64)
        kimage=Image
        # QEMU's arm -kernel loads a raw Image (or a gzip'd one). Debian's
        # arm64 vmlinuz is the raw Image today; accept a gzip'd one too,
        # and check the Image header's magic "ARM\x64" at offset 0x38.
        if [ "$(head -c2 "$kernel" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
            gzip -dc "$kernel" >"$out/Image"
        else
            cp "$kernel" "$out/Image"
        fi
        [ "$(dd if="$out/Image" bs=1 skip=56 count=4 2>/dev/null | od -An -tx1 | tr -d ' ')" = 41524d64 ] \
            || { log "$kernel is not an arm64 Image"; exit 1; }
        ln -s Image "$out/vmlinuz"
        ;;
esac
# trixie's busybox-static installs /usr/bin/busybox (merged /usr), older
# ones /bin/busybox.
busybox=
for b in usr/bin/busybox bin/busybox; do
    [ -x "$out/busybox-deb/$b" ] && { busybox=$out/busybox-deb/$b; break; }
done
[ -n "$busybox" ] || { log "no busybox binary in $BUSYBOX_PKG"; exit 1; }

python3 "$here/mkinitramfs.py" \
    --arch "$ARCH" \
    --modules-dir "$moddir" \
    --busybox "$busybox" \
    --init "$here/init" \
    --output "$out/initramfs.gz" \
    $MODULES

cat >"$out/image.env" <<ENV
KERNEL_RELEASE=$KERNEL_ABI
KERNEL_PACKAGE=$KERNEL_PKG=$KERNEL_VERSION
BUSYBOX_PACKAGE=$BUSYBOX_PKG=$BUSYBOX_VERSION
ENV
# amd64's image.env stays as it always was; other arches say which they are.
[ "$ARCH" = amd64 ] || printf 'ARCH=%s\nKERNEL_IMAGE=Image\n' "$ARCH" >>"$out/image.env"
echo "$stamp_want" >"$out/.stamp"
log "built $out/$kimage and $out/initramfs.gz ($(du -k "$out/initramfs.gz" | cut -f1) KiB)"
