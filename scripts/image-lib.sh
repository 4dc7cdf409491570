# shellcheck shell=bash
# Sourced by the image scripts (build-image.sh, image-base.sh, save-image.sh); not run on its own.
#
# Every buildah call of this project goes through `bh`, which uses one storage of the project's own
# under $IMAGE_CACHE (default .cache/image) with the vfs driver: vfs needs no overlay or FUSE mounts,
# so it works as root in a plain VM, in a container and in CI alike, and it never mixes with a
# storage that podman or another buildah user keeps in /var/lib/containers with another driver.
# Run buildah by hand on the same images with the same options:
#     buildah --root .cache/image/storage --runroot .cache/image/run --storage-driver vfs images

IMAGE_CACHE="${IMAGE_CACHE:-$PWD/.cache/image}"
case "$IMAGE_CACHE" in /*) ;; *) IMAGE_CACHE="$PWD/$IMAGE_CACHE" ;; esac
mkdir -p "$IMAGE_CACHE"

BUILDAH=(buildah --root "$IMAGE_CACHE/storage" --runroot "$IMAGE_CACHE/run" --storage-driver vfs)
# The local stand-in for the pinned base image, made by image-base.sh where the registry is out of reach.
# shellcheck disable=SC2034 # used by the scripts that source this file
LOCAL_BASE=localhost/debian:bookworm-slim

bh() { "${BUILDAH[@]}" "$@"; }

have_image() { bh inspect --type image "$1" >/dev/null 2>&1; }

log() { echo "$(basename "$0"): $*" >&2; }

die() {
    log "$*"
    exit 1
}

# The project's version, from pyproject.toml (the one place it is written).
project_version() {
    sed -n 's/^version = "\([^"]*\)"$/\1/p' pyproject.toml | head -n1
}

# Seconds since the epoch, for the timings the scripts report.
now() { date +%s; }
