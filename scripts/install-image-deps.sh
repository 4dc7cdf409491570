#!/usr/bin/env bash
# Install the Debian packages `make image` and `make image-test` need:
#   buildah               -> builds the image from the Dockerfile without a Docker engine
#                            (--isolation chroot --storage-driver vfs: no daemon, no overlay mounts)
#   debootstrap           -> a local debian:bookworm-slim when the base image cannot be pulled
#   debian-archive-keyring-> debootstrap checks the mirror's Release signature with it
# Idempotent and silent when everything is there; apt-get update runs only when something is missing.
set -euo pipefail

missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
pkgs="${missing[*]}"

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && { sudo -n true >/dev/null 2>&1 || [ -t 0 ]; }; then
    SUDO=(sudo)
else
    echo "install-image-deps: missing Debian packages: ${pkgs}" >&2
    echo "install-image-deps: not root and no passwordless sudo; run as root:" >&2
    echo "    apt-get update && apt-get install -y --no-install-recommends ${pkgs}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-image-deps: apt-get not found; install these packages by hand: ${pkgs}" >&2
    exit 1
fi

echo "install-image-deps: installing ${pkgs}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
# No recommends: buildah's (fuse-overlayfs, runc/crun) are for other storage drivers and isolations.
# shellcheck disable=SC2086 # word splitting of $pkgs is intended
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
