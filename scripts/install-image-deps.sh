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

# shellcheck source=scripts/lib/apt-install.sh
. "$(dirname "$0")/lib/apt-install.sh"
apt_install install-image-deps "${missing[@]}"
