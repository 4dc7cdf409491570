#!/usr/bin/env bash
# Make localhost/debian:bookworm-slim in the project's buildah storage, for machines that cannot
# pull the pinned base image (no registry access; only the Debian mirror is reachable).
#
#   1. debootstrap --variant=minbase bookworm from the mirror apt already uses on this machine
#      (read from /etc/apt/sources.list{,.d/*}; DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR override),
#      the Release file checked against debian-archive-keyring;
#   2. slimmed the way the official -slim images are: no docs (copyright files stay), man pages,
#      info pages or translations, now and for every package installed later; apt lists and
#      caches, logs, machine-id and resolv.conf emptied;
#   3. kept as a tarball under $IMAGE_CACHE/base (cached: debootstrap runs again only when the
#      tarball is missing or older than BASE_MAX_AGE_DAYS, default 30, so security updates arrive),
#   4. imported with `buildah from scratch` + a tar extract into the mounted container + commit.
#
# Usage: scripts/image-base.sh [--force]     (--force: debootstrap again even when cached)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/image-lib.sh
. scripts/image-lib.sh

SUITE=bookworm
BASE_DIR="$IMAGE_CACHE/base"
TARBALL="$BASE_DIR/debian-$SUITE-slim.tar"
MAX_AGE_DAYS="${BASE_MAX_AGE_DAYS:-30}"
force=false
[ "${1:-}" = "--force" ] && force=true

[ "$(id -u)" -eq 0 ] || die "debootstrap and the vfs storage need root"

# The first URI of an enabled "deb" source that serves suite $1, from deb822 (.sources) and
# one-line (.list) files alike.
apt_mirror_for() {
    local suite=$1 f files=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ "${#files[@]}" -gt 0 ] || return 0
    awk -v suite="$suite" '
        function flush() {
            if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " suite " ") && uris != "" && found == "") {
                split(uris, u, " "); found = u[1]
            }
            types = ""; uris = ""; suites = ""; enabled = ""
        }
        FNR == 1 { flush() }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^#/) next
            key = tolower($1)
            sub(/^[^:]*:[ \t]*/, "")
            if (key == "types:") types = $0
            else if (key == "uris:") uris = $0
            else if (key == "suites:") suites = $0
            else if (key == "enabled:") enabled = tolower($0)
            next
        }
        $1 == "deb" {
            i = 2
            if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            if ($(i + 1) == suite && found == "") found = $i
        }
        END { flush(); if (found != "") print found }
    ' "${files[@]}"
}

build_tarball() {
    local mirror security rootfs started
    mirror="${DEBIAN_MIRROR:-$(apt_mirror_for "$SUITE")}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    security="${DEBIAN_SECURITY_MIRROR:-$(apt_mirror_for "$SUITE-security")}"
    security="${security:-http://deb.debian.org/debian-security}"
    command -v debootstrap >/dev/null || die "debootstrap missing: run scripts/install-image-deps.sh"

    rootfs="$BASE_DIR/rootfs"
    rm -rf "$rootfs" "$TARBALL.tmp"
    mkdir -p "$rootfs"
    started=$(now)
    log "debootstrap --variant=minbase $SUITE from $mirror (a few minutes)"
    if ! debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$SUITE" "$rootfs" "$mirror" >"$BASE_DIR/debootstrap.log" 2>&1; then
        tail -n 30 "$BASE_DIR/debootstrap.log" >&2
        [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
        die "debootstrap failed (log: $BASE_DIR/debootstrap.log)"
    fi

    # Sources as the official image has them (deb822, with updates and security).
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

    # Slim: what dpkg leaves out from now on, then the same paths removed from what is installed.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
# Like the official -slim images: no documentation or translations in containers.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/*
    # apt in containers: no translations, no .deb kept after installing.
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    # Leftovers of the bootstrap and of this machine.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/* "$rootfs"/debootstrap
    : >"$rootfs/etc/machine-id"
    rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"

    tar -C "$rootfs" --numeric-owner --xattrs --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf "$rootfs"
    log "base rootfs made in $(($(now) - started)) s: $TARBALL ($(du -m "$TARBALL" | cut -f1) MB)"
}

import_tarball() {
    local ctr mnt
    ctr=$(bh from scratch)
    # shellcheck disable=SC2064 # expand $ctr now
    trap "bh rm '$ctr' >/dev/null 2>&1 || true" EXIT
    mnt=$(bh mount "$ctr")
    tar -C "$mnt" --numeric-owner --xattrs -xpf "$TARBALL"
    bh umount "$ctr" >/dev/null
    bh config --os linux --arch "$(dpkg --print-architecture 2>/dev/null || echo amd64)" \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd '["bash"]' \
        --label org.opencontainers.image.title="debian:$SUITE-slim (local debootstrap --variant=minbase)" \
        "$ctr"
    bh rmi "$LOCAL_BASE" >/dev/null 2>&1 || true
    bh commit --quiet --rm "$ctr" "$LOCAL_BASE" >/dev/null
    trap - EXIT
    log "imported $LOCAL_BASE"
}

mkdir -p "$BASE_DIR"
if $force || [ ! -s "$TARBALL" ] || [ -n "$(find "$TARBALL" -mtime "+$MAX_AGE_DAYS" 2>/dev/null)" ]; then
    build_tarball
    import_tarball
elif ! have_image "$LOCAL_BASE"; then
    import_tarball
fi
