#!/usr/bin/env bash
# Fetch the pinned QEMU source tarball and print its path.
#
# Sources, tried in this order (the first that yields a tarball with the
# pinned sha256 wins; a tarball with the wrong hash is an error, never used):
#   1. $QEMU_TARBALL, an explicit path given by the user;
#   2. the local cache ($VIOMMU_CACHE, default ~/.cache/virtio-iommu-rs);
#   3. Debian's source package qemu 1:10.2.2+ds-1 from sid's deb-src index,
#      fetched with a private sources list and apt state directory, so the
#      machine's own apt configuration is left alone;
#   4. the upstream release tarball, for machines with internet, only when
#      its pinned hash is known (QEMU_UPSTREAM_SHA256);
#   5. the copy kept beside the checkout in ../shared/deps (CI's last resort).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/versions.sh"

cache=${VIOMMU_CACHE:-$HOME/.cache/virtio-iommu-rs}
mkdir -p "$cache"
dest="$cache/$QEMU_DEB_TARBALL"

log() { echo "fetch-qemu: $*" >&2; }

# verify FILE SHA256: true if FILE exists and has the pinned hash.
verify() {
    [ -f "$1" ] || return 1
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    if [ "$got" != "$2" ]; then
        log "REJECTED $1: sha256 $got, expected $2"
        return 1
    fi
}

# An explicit path must be right: a wrong one is an error, not a fallback.
if [ -n "${QEMU_TARBALL:-}" ]; then
    case "$QEMU_TARBALL" in
        *"$QEMU_DEB_TARBALL") want=$QEMU_DEB_SHA256 ;;
        *) want=${QEMU_UPSTREAM_SHA256:-$QEMU_DEB_SHA256} ;;
    esac
    verify "$QEMU_TARBALL" "$want" || { log "QEMU_TARBALL=$QEMU_TARBALL is not the pinned QEMU"; exit 1; }
    log "using \$QEMU_TARBALL"
    echo "$QEMU_TARBALL"
    exit 0
fi

if verify "$dest" "$QEMU_DEB_SHA256"; then
    log "using cached $dest"
    echo "$dest"
    exit 0
fi
rm -f "$dest"

# Debian's archive, through apt with private state. The mirror is the one the
# machine already uses for its Debian packages.
fetch_debian() {
    command -v apt-get >/dev/null || return 1
    local mirror
    mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Origin: Debian' 'Label: Debian' 2>/dev/null \
             | grep -v security | head -n1)
    [ -n "$mirror" ] || return 1
    local st="$cache/apt"
    rm -rf "$st"
    mkdir -p "$st/lists/partial" "$st/cache/archives/partial" "$st/dl"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" >"$st/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$st/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
                -o "Dir::State::Lists=$st/lists" -o "Dir::Cache=$st/cache"
                -o "Dir::State::status=/dev/null" -o "APT::Sandbox::User=root"
                -o "Acquire::Languages=none" -o "Debug::NoLocking=1")
    log "asking Debian sid's deb-src index for qemu=$QEMU_DEB_VERSION"
    apt-get "${opts[@]}" -qq update >&2 || return 1
    (cd "$st/dl" && apt-get "${opts[@]}" -qq source --download-only "qemu=$QEMU_DEB_VERSION") >&2 || return 1
    mv "$st/dl/$QEMU_DEB_TARBALL" "$dest" || return 1
    rm -rf "$st"
}

if fetch_debian && verify "$dest" "$QEMU_DEB_SHA256"; then
    log "fetched Debian's $QEMU_DEB_TARBALL"
    echo "$dest"
    exit 0
fi
rm -f "$dest"

if [ -n "${QEMU_UPSTREAM_SHA256:-}" ] && command -v curl >/dev/null; then
    up="$cache/$QEMU_UPSTREAM_TARBALL"
    log "trying the upstream release tarball"
    if curl -fsSL --connect-timeout 10 -o "$up.part" "$QEMU_UPSTREAM_URL" && mv "$up.part" "$up" \
            && verify "$up" "$QEMU_UPSTREAM_SHA256"; then
        echo "$up"
        exit 0
    fi
    rm -f "$up" "$up.part"
fi

shared="$here/../shared/deps/$QEMU_DEB_TARBALL"
if verify "$shared" "$QEMU_DEB_SHA256"; then
    log "falling back to $shared"
    cp "$shared" "$dest"
    echo "$dest"
    exit 0
fi

log "no verified QEMU $QEMU_VERSION tarball could be found"
exit 1
