#!/usr/bin/env bash
# `make image`: build the offline-bundle image from the Dockerfile with buildah
# (--isolation chroot, vfs storage under $IMAGE_CACHE: no Docker engine, no daemon, no overlay
# mounts), then print its size.
#
# Environment (the Makefile sets them):
#   IMAGE        name:tag to build            (default localhost/offline-bundle:<version>)
#   BASE_IMAGE   base image                   (default: the digest pinned in the Dockerfile)
#   EXTRA_CA     PEM bundle passed as the build secret `extra_ca`; empty: none
#   SOURCE_URL, REVISION   OCI labels (default: git remote origin; the last commit of the inputs)
#   MAX_IMAGE_MB fail when the image is larger (default 300: git and its perl take about 100 MB)
#   IMAGE_REBUILD=1  build even when the image's recorded inputs are unchanged
#
# The base image: used from the storage when there, else pulled; where the pull fails (no registry
# reachable) the build runs on localhost/debian:bookworm-slim, made once by image-base.sh with
# debootstrap from the Debian mirror.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/image-lib.sh
. scripts/image-lib.sh

VERSION="${VERSION:-$(project_version)}"
IMAGE="${IMAGE:-localhost/offline-bundle:$VERSION}"
BUILDER_CACHE=localhost/offline-bundle-builder:cache
PINNED_BASE=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile | head -n1)
BASE_IMAGE="${BASE_IMAGE:-$PINNED_BASE}"
EXTRA_CA="${EXTRA_CA-}"
MAX_IMAGE_MB="${MAX_IMAGE_MB:-300}"
SOURCE_URL="${SOURCE_URL:-$(git remote get-url origin 2>/dev/null || echo unknown)}"
# The last commit that changed what goes into the image (not HEAD: a commit to the README or the
# tests would otherwise make a new image of the same content).
IMAGE_INPUTS=(Dockerfile .dockerignore pyproject.toml resource assets image)
REVISION="${REVISION:-$(git log -1 --format=%H -- "${IMAGE_INPUTS[@]}" 2>/dev/null || true)}"
REVISION="${REVISION:-unknown}"
if [ "$REVISION" != unknown ] && [ -n "$(git status --porcelain -- "${IMAGE_INPUTS[@]}" 2>/dev/null)" ]; then
    REVISION="$REVISION-dirty"
fi

[ "$(id -u)" -eq 0 ] || die "buildah's chroot isolation with vfs storage needs root here"
command -v buildah >/dev/null || die "buildah missing: run scripts/install-image-deps.sh"

if [ -n "$EXTRA_CA" ]; then
    if ! [ -r "$EXTRA_CA" ] || ! [ -s "$EXTRA_CA" ]; then
        die "EXTRA_CA=$EXTRA_CA is not a readable, non-empty file"
    fi
    grep -q -- '-----BEGIN CERTIFICATE-----' "$EXTRA_CA" || die "EXTRA_CA=$EXTRA_CA holds no PEM certificate"
fi

started=$(now)

# -- the base ---------------------------------------------------------------------------------------
if [ "$BASE_IMAGE" = "$LOCAL_BASE" ]; then
    bash scripts/image-base.sh
elif have_image "$BASE_IMAGE"; then
    :
else
    log "pulling $BASE_IMAGE"
    if ! timeout 600 "${BUILDAH[@]}" pull --quiet --retry 1 "$BASE_IMAGE" >/dev/null 2>"$IMAGE_CACHE/pull.log"; then
        log "cannot pull it ($(tail -n1 "$IMAGE_CACHE/pull.log" | cut -c1-160))"
        log "building on $LOCAL_BASE (debootstrap --variant=minbase bookworm) instead"
        bash scripts/image-base.sh
        BASE_IMAGE=$LOCAL_BASE
    fi
fi

# -- up to date? ------------------------------------------------------------------------------------
# buildah's layer cache makes a rebuild of unchanged inputs correct but not free on vfs (about a
# minute of copying), so the image carries a hash of everything the build reads: the files of the
# context (.dockerignore keeps it to these), the base image's ID and the build arguments.
inputs_hash() {
    {
        bh images --no-trunc --format '{{.ID}}' "$BASE_IMAGE" | head -n1
        printf '%s\n' "$VERSION" "$SOURCE_URL" "$REVISION"
        find Dockerfile .dockerignore pyproject.toml assets/check assets/in assets/out image resource \
            \( -name __pycache__ -o -name '*.egg-info' \) -prune -o -type f -printf '%m %p\n' | LC_ALL=C sort
        find Dockerfile .dockerignore pyproject.toml assets/check assets/in assets/out image resource \
            \( -name __pycache__ -o -name '*.egg-info' \) -prune -o -type f -print0 | LC_ALL=C sort -z |
            xargs -0 sha256sum
    } | sha256sum | cut -c1-64
}
INPUTS=$(inputs_hash)
built_inputs=$(bh inspect --type image --format '{{index .OCIv1.Config.Labels "dev.offline-bundle.build-inputs"}}' \
    "$IMAGE" 2>/dev/null || true)
if [ "$built_inputs" = "$INPUTS" ] && [ -z "${IMAGE_REBUILD:-}" ]; then
    size=$(bh images --format '{{.Size}}' "$IMAGE" | head -n1)
    echo "image: $IMAGE  $size  up to date (inputs ${INPUTS:0:12}; IMAGE_REBUILD=1 builds anyway)" >&2
    exit 0
fi

# -- the build --------------------------------------------------------------------------------------
args=(
    --isolation chroot
    --layers
    --pull=never
    --network host
    --build-arg "BASE_IMAGE=$BASE_IMAGE"
    --build-arg "VERSION=$VERSION"
    --build-arg "SOURCE_URL=$SOURCE_URL"
    --build-arg "REVISION=$REVISION"
    # Labels from the command line as well: buildah 1.28 reuses a cached LABEL step whatever the ARGs.
    --label "org.opencontainers.image.version=$VERSION"
    --label "org.opencontainers.image.source=$SOURCE_URL"
    --label "org.opencontainers.image.revision=$REVISION"
    --label "dev.offline-bundle.build-inputs=$INPUTS"
    --tag "$IMAGE"
)
if [ -n "$EXTRA_CA" ]; then
    args+=(--secret "id=extra_ca,src=$EXTRA_CA")
    log "extra CA bundle for the build: $EXTRA_CA (a build secret; not in the image)"
fi

log "building $IMAGE on $BASE_IMAGE"
build_log="$IMAGE_CACHE/build.log"
if ! bh build "${args[@]}" -f Dockerfile . >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    die "build failed (whole log: $build_log)"
fi
grep -E '^\[[0-9]+/[0-9]+\] STEP|^--> Using cache' "$build_log" | cut -c1-110 >&2 || true

# -- storage housekeeping -----------------------------------------------------------------------------
# vfs keeps a full copy of the filesystem per layer, so superseded cache layers add up to gigabytes
# within a few builds. The builder stage's last layer gets a tag (it is a cache, not a product),
# then every image that is neither tagged nor a parent of one is removed.
builder_id=$(awk '/^\[2\//{exit} /^--> [0-9a-f]+$/{id=$2} END{print id}' "$build_log")
if [ -n "$builder_id" ]; then
    bh tag "$builder_id" "$BUILDER_CACHE" >/dev/null
fi
bh rmi --prune >/dev/null 2>&1 || log "could not prune old layers (bh rmi --prune)"

# -- report -----------------------------------------------------------------------------------------
# buildah reports the uncompressed size of all layers, in decimal units ("168 MB").
size=$(bh images --format '{{.Size}}' "$IMAGE" | head -n1)
size_mb=$(echo "$size" | awk '{ f = ($2 == "GB") ? 1000 : ($2 == "kB") ? 0.001 : 1; printf "%d", $1 * f + 0.5 }')
echo "image: $IMAGE  $size  base $BASE_IMAGE  built in $(($(now) - started)) s" >&2
if [ "$size_mb" -gt "$MAX_IMAGE_MB" ]; then
    die "$IMAGE is $size, over the $MAX_IMAGE_MB MB limit"
fi
