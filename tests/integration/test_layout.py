"""The bucket layout of format 1: payloads straight to ``_blobs/<id>``, keys relative to the bundle folder.

A put names each payload before its first byte, so it uploads to the final key with no temporary
object and no server-side copy; a manifest's payload keys are relative to ``<prefix><name>/``, so a
bundle carried by ``mirror`` or on a medium into another bucket under another ``prefix`` reads the
same there. Real SeaweedFS, real gpg; ``out`` and ``in`` run as Concourse runs them.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import ok, run_cli, write_yaml
from tests.support.concourse import make_source
from tests.support.seaweed import new_bucket_name
from tests.support.sides import Sides, meta

pytestmark = pytest.mark.integration

MiB = 1 << 20
BIG = 20 * MiB + 7  # three 8 MiB multipart parts
PAYLOAD_KEY = re.compile(r"_blobs/[0-9a-f]{32}")


def build_tree(root: Path, text: str = "small") -> Path:
    (root / "big").mkdir(parents=True, exist_ok=True)
    with open(root / "big" / "data.bin", "wb") as f:
        f.write(os.urandom(BIG))
    (root / "small").mkdir(parents=True, exist_ok=True)
    (root / "small" / "notes.txt").write_text(text)
    return root


PARAMS = {"parts": [{"name": "big", "path": "big"}, {"name": "small", "path": "small"}]}


def signed_manifest(client: Any, bucket: str, key: str) -> dict[str, Any]:
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return json.loads(body.split(b"\n\n", 1)[1].split(b"\n-----BEGIN PGP SIGNATURE", 1)[0])


def all_keys(client: Any, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def open_uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def same_tree(a: Path, b: Path) -> bool:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    return files(a) == files(b)


# ---------------------------------------------------------------------------------------------- put


def test_out_uploads_each_payload_to_its_final_key_with_no_copy(sides: Sides, tmp_path: Path) -> None:
    """Every S3 request of a put is counted (botocore's own event hook, in-process against the real store):
    no CopyObject, no UploadPartCopy, no object but the payloads and the commit object."""
    from offline_bundle.bundle.pack import Packer
    from offline_bundle.core.config import BuildInfo, OutParams, PartSpec, parse_source
    from offline_bundle.storage.s3.store import S3Store

    source = parse_source(sides.put_source)
    store = S3Store.from_source(source)
    calls: Counter[str] = Counter()
    keys_written: list[str] = []

    def count(model: Any, params: dict[str, Any], **_kw: Any) -> None:
        calls[model.name] += 1
        if model.name in ("PutObject", "CreateMultipartUpload", "CompleteMultipartUpload"):
            keys_written.append(params["Key"])

    store.client.meta.events.register("before-parameter-build.s3", count)  # type: ignore[attr-defined]
    build = build_tree(tmp_path / "build")
    params = OutParams(parts=(PartSpec("big", "big", "big/"), PartSpec("small", "small", "small/")), version="1")
    result = Packer(source, store, lambda _m: None).put(params, str(build), BuildInfo())

    payloads = [p.payload.key for p in result.manifest.parts]
    assert all(PAYLOAD_KEY.fullmatch(k) for k in payloads) and len(set(payloads)) == 2
    objects = ["demo/" + k for k in payloads]
    assert all_keys(sides.client(), sides.bucket) == sorted([*objects, "demo/1/manifest.json.asc"])
    assert calls["CopyObject"] == 0 and calls["UploadPartCopy"] == 0 and calls["DeleteObject"] == 0
    assert calls["CreateMultipartUpload"] == calls["CompleteMultipartUpload"] == 1  # the big part only
    assert calls["UploadPart"] == 3
    # The big payload went up as a multipart upload under its final key; the small one in one PUT.
    # (parts may run side by side: the order between them is free, the commit object comes last).
    big, small = objects
    assert Counter(keys_written[:-1]) == {big: 2, small: 1} and keys_written[-1] == "demo/1/manifest.json.asc"
    assert open_uploads(sides.client(), sides.bucket) == []

    dest = tmp_path / "dest"
    sides.get("1", dest)
    assert (dest / "big" / "data.bin").read_bytes() == (build / "big" / "data.bin").read_bytes()


def test_a_put_that_fails_in_its_second_part_leaves_no_payload_and_no_upload(sides: Sides, tmp_path: Path) -> None:
    """The first part is fully uploaded when the second fails: the put removes what it wrote."""
    from offline_bundle.bundle.pack import Packer
    from offline_bundle.core.config import BuildInfo, OutParams, PartSpec, parse_source
    from offline_bundle.errors import StoreError
    from offline_bundle.storage.base import BlobWriter
    from offline_bundle.storage.s3.store import S3Store

    class FailingStore(S3Store):
        """A real store whose second payload writer dies after its first multipart part."""

        writers = 0

        def writer(self, key: str, estimated_bytes: int, on_bytes: Any = None, **kw: Any) -> BlobWriter:
            inner = super().writer(key, estimated_bytes, on_bytes, **kw)
            FailingStore.writers += 1
            if FailingStore.writers < 2:
                return inner
            real_write = inner.write

            def write(chunk: bytes) -> None:
                if inner.size > 9 * MiB:
                    raise StoreError("the link to the store went down")
                real_write(chunk)

            inner.write = write  # type: ignore[method-assign]
            return inner

    source = parse_source(sides.put_source)
    build = build_tree(tmp_path / "build")
    params = OutParams(parts=(PartSpec("small", "small", "small/"), PartSpec("big", "big", "big/")), version="1")
    with pytest.raises(StoreError, match="went down"):
        Packer(source, FailingStore.from_source(source), lambda _m: None).put(params, str(build), BuildInfo())
    assert FailingStore.writers == 2
    assert all_keys(sides.client(), sides.bucket) == []
    assert open_uploads(sides.client(), sides.bucket) == []


# ----------------------------------------------------------------------- carried to another bucket and prefix


def far_bucket(sides: Sides) -> str:
    name = new_bucket_name()
    sides.client().create_bucket(Bucket=name)
    return name


def test_a_bundle_mirrored_and_imported_into_another_bucket_and_prefix_reads_the_same(
    sides: Sides, tmp_path: Path
) -> None:
    server, keys = sides.server, sides.keys
    near = {**sides.put_source, "prefix": "transfers/near/"}
    build = build_tree(tmp_path / "build")
    put = sides.put(build, {**PARAMS, "version": "1.0.0"}, source=near)
    assert meta(put)["parts"] == "big,small"
    near_manifest = signed_manifest(sides.client(), sides.bucket, "transfers/near/demo/1.0.0/manifest.json.asc")
    relative = sorted(p["payload"]["key"] for p in near_manifest["parts"])
    assert all(PAYLOAD_KEY.fullmatch(k) for k in relative)

    def config(name: str, bucket: str, prefix: str, **extra: Any) -> Path:
        source = make_source(server, bucket, use_writer_identity=True, prefix=prefix, **extra)
        return write_yaml(tmp_path / f"{name}.yml", source)

    trust = {"trusted_public_keys": [keys.signer.public_armored]}
    near_reader = config("near", sides.bucket, "transfers/near/", **trust)

    def get_source(bucket: str, prefix: str) -> dict[str, Any]:
        return make_source(
            server,
            bucket,
            use_readonly_identity=True,
            prefix=prefix,
            trusted_public_keys=[keys.signer.public_armored],
            decryption_private_key=keys.recipient.secret_armored,
        )

    def read_back(bucket: str, prefix: str, dest: Path) -> None:
        sides.in_("1.0.0", dest, source=get_source(bucket, prefix))
        assert same_tree(dest / "big", build / "big") and same_tree(dest / "small", build / "small")
        # The commit object crossed byte for byte: the manifest still names the same relative keys.
        assert sorted(p["payload"]["key"] for p in json.loads((dest / "manifest.json").read_bytes())["parts"]) == (
            relative
        )

    # By mirror: another bucket, another prefix (one that is not even a folder).
    mirrored = far_bucket(sides)
    ok(run_cli("mirror", "--from-config", near_reader, "--to-config", config("far", mirrored, "far-", **trust)))
    assert [k for k in all_keys(sides.client(), mirrored) if not k.startswith("far-demo/_records/")] == sorted(
        ["far-demo/1.0.0/manifest.json.asc", *("far-demo/" + k for k in relative)]
    )
    read_back(mirrored, "far-", tmp_path / "mirrored")

    # On a medium: exported under the near prefix, imported into a third bucket under a third prefix;
    # import finds the bundle on the medium under the prefix export wrote.
    medium = tmp_path / "medium"
    ok(run_cli("export", "--config", near_reader, "--to", medium, "--piece-size", "5MiB"))
    assert (medium / "transfers" / "near" / "demo" / "1.0.0" / "manifest.json.asc").is_file()
    for key in relative:
        assert (medium / "transfers" / "near" / "demo" / (key + ".index.json")).is_file()
    imported = far_bucket(sides)
    run = ok(run_cli("import", "--config", config("air", imported, "air/gapped/", **trust), "--from", medium))
    assert "under prefix 'transfers/near/'" in run.stderr
    assert [k for k in all_keys(sides.client(), imported) if not k.startswith("air/gapped/demo/_records/")] == sorted(
        ["air/gapped/demo/1.0.0/manifest.json.asc", *("air/gapped/demo/" + k for k in relative)]
    )
    read_back(imported, "air/gapped/", tmp_path / "imported")


def test_import_asks_for_the_medium_prefix_when_the_medium_holds_the_bundle_twice(sides: Sides, tmp_path: Path) -> None:
    medium = tmp_path / "medium"
    for prefix in ("a/", "b/"):
        (medium / prefix / "demo" / "1.0.0").mkdir(parents=True)
        (medium / prefix / "demo" / "1.0.0" / "manifest.json.asc").write_text("not looked at")
    far = write_yaml(
        tmp_path / "far.yml",
        make_source(sides.server, far_bucket(sides), use_writer_identity=True, prefix="c/"),
    )
    proc = run_cli("import", "--config", far, "--from", medium)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    [error] = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert "under several prefixes ('a/', 'b/')" in error and "--medium-prefix" in error
