#!/usr/bin/env bash
# `make image-save`: the two bootstrap forms of the image, for carrying it to the air-gapped side.
#
#   $IMAGE_DIST/offline-bundle-<version>.oci.tar      OCI archive (`buildah push ... oci-archive:`),
#       for sites with a registry: `skopeo copy oci-archive:... docker://registry.internal/...`
#   $IMAGE_DIST/offline-bundle-<version>-rootfs.tgz   rootfs/ + metadata.json, the layout that
#       Concourse's registry-image and docker-image resources produce and that a task's `image:`
#       takes, for sites with only S3 (an `s3` get with `unpack: true`)
#   $IMAGE_DIST/offline-bundle-<version>.sha256       sha256sum -c for both, to check after carrying
#
# Environment: IMAGE, IMAGE_CACHE, IMAGE_DIST (default dist), VERSION (the Makefile sets them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/image-lib.sh
. scripts/image-lib.sh

VERSION="${VERSION:-$(project_version)}"
IMAGE="${IMAGE:-localhost/offline-bundle:$VERSION}"
DIST="${IMAGE_DIST:-dist}"
have_image "$IMAGE" || die "$IMAGE is not in $IMAGE_CACHE/storage: run make image first"
mkdir -p "$DIST"

base="offline-bundle-$VERSION"
oci="$DIST/$base.oci.tar"
rootfs="$DIST/$base-rootfs.tgz"
sums="$DIST/$base.sha256"
stamp="$IMAGE_CACHE/saved-$base.image-id"
started=$(now)

# Saved already from this very image (and intact)? Then there is nothing to do.
image_id=$(bh images --no-trunc --format '{{.ID}}' "$IMAGE" | head -n1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$image_id" ] && [ -f "$sums" ] &&
    (cd "$DIST" && sha256sum --quiet -c "$(basename "$sums")" >/dev/null 2>&1); then
    log "$oci and $rootfs are up to date"
    exit 0
fi
rm -f "$stamp"

# -- OCI archive: the image as built (layers gzip-compressed), tagged offline-bundle:<version> ----------
rm -f "$oci" "$oci.tmp"
bh push --quiet "$IMAGE" "oci-archive:$oci.tmp:offline-bundle:$VERSION" >/dev/null
mv "$oci.tmp" "$oci"

# -- rootfs/ + metadata.json --------------------------------------------------------------------------
stage=$(mktemp -d "$IMAGE_CACHE/save.XXXXXX")
ctr=$(bh from --pull=never --quiet "$IMAGE")
cleanup() {
    bh rm "$ctr" >/dev/null 2>&1 || true
    rm -rf "$stage"
}
trap cleanup EXIT
mnt=$(bh mount "$ctr")

# metadata.json as registry-image writes it: the image config's Env and User ("" means root).
bh inspect --type image "$IMAGE" | python3 -c '
import json, sys
config = json.load(sys.stdin)["OCIv1"]["config"]
json.dump({"env": config.get("Env") or [], "user": config.get("User") or ""}, sys.stdout)
' >"$stage/metadata.json"

# Numeric owners: the rootfs is unpacked on a worker whose /etc/passwd is not the image's.
# "./x" becomes "rootfs/x" in member and hard-link names, never in symlink targets (flag S).
rm -f "$rootfs" "$rootfs.tmp"
tar --numeric-owner --xattrs -czf "$rootfs.tmp" \
    --transform 's,^\./,rootfs/,S' --transform 's,^\.$,rootfs,S' \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -C "$mnt" . -C "$stage" metadata.json
mv "$rootfs.tmp" "$rootfs"
bh umount "$ctr" >/dev/null

(cd "$DIST" && sha256sum "$(basename "$oci")" "$(basename "$rootfs")") >"$sums"
echo "$image_id" >"$stamp"
log "saved in $(($(now) - started)) s:"
for f in "$oci" "$rootfs"; do
    echo "  $f  $(du -m "$f" | cut -f1) MB" >&2
done
echo "  $sums" >&2
