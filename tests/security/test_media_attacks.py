"""The carrier attacks the medium: links, pipes, folders where files belong, altered indexes, pieces of
something else, files that change while they are read, objects planted in the air-gapped bucket.

Real parts throughout: bundles packed and exported with the CLI against SeaweedFS and gpg, a real
folder as the medium, real symbolic and hard links, and the import run as an operator runs it. The
import target is a SeaweedFS of this module's own, so a test can search all of its files on disk for
bytes that must never have been sent (an aborted upload's bytes stay there until it compacts).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from offline_bundle.core.config import parse_source
from offline_bundle.errors import VerificationError
from offline_bundle.storage.s3.store import S3Store
from offline_bundle.transfer.verified_upload import PieceSource, upload_verified
from tests.support.carrier import (
    Carry,
    MiB,
    copy_medium,
    index_file,
    leaks,
    make_build,
    needles_of,
    new_bucket,
    ok,
    one_error,
    payload_path,
    pieces_folder,
    random_bytes,
)
from tests.support.cli import run_cli
from tests.support.concourse import make_source
from tests.support.gpgkeys import GpgKeys
from tests.support.seaweed import SeaweedServer

pytestmark = pytest.mark.integration

PIECE = 5 * MiB


@pytest.fixture(scope="module")
def far(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """The air-gapped store, this module's own: its data folder holds nothing but what imports sent."""
    server = SeaweedServer.create(tmp_path_factory.mktemp("far-seaweed"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Media:
    carry: Carry
    v1: Path  # 1.0.0 in 5 MiB pieces: big (three pieces) and small (one)
    v2: Path  # 2.0.0: the same big payload, another small one
    delta: Path  # 2.0.0 exported --since 1.0.0: only the small payload
    packed: Path  # 3.0.0 written by pack --to-dir: each payload one file, no index


@pytest.fixture(scope="module")
def media(seaweed: SeaweedServer, gpg_keys: GpgKeys, tmp_path_factory: pytest.TempPathFactory) -> Media:
    folder = tmp_path_factory.mktemp("carried")
    carry = Carry(seaweed, new_bucket(seaweed), gpg_keys, folder)
    build = make_build(folder / "build", "one")
    carry.pack(build, "1.0.0")
    (build / "small" / "notes.txt").write_text("two")
    carry.pack(build, "2.0.0")
    carry.export("1.0.0", folder / "v1")
    carry.export("2.0.0", folder / "v2")
    carry.export("2.0.0", folder / "delta", "--since", "1.0.0")
    carry.pack(build, "3.0.0", to_dir=folder / "packed")
    return Media(carry, folder / "v1", folder / "v2", folder / "delta", folder / "packed")


@dataclass
class Imported:
    proc: Any
    bucket: str


def import_(media: Media, far: SeaweedServer, medium: Path, *extra: str, bucket: str | None = None) -> Imported:
    bucket = bucket or new_bucket(far)
    config = media.carry.reader_config(far, bucket)
    return Imported(run_cli("import", "--config", config, "--from", medium, *extra, timeout=120), bucket)


def keys_in(server: SeaweedServer, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in server.client().list_objects_v2(Bucket=bucket).get("Contents", []))


def uploads_in(server: SeaweedServer, bucket: str) -> list[dict[str, Any]]:
    return server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def nothing_committed(server: SeaweedServer, bucket: str) -> None:
    assert not [k for k in keys_in(server, bucket) if k.endswith("manifest.json.asc")]
    assert uploads_in(server, bucket) == []


def big_key(media: Media, version: str = "1.0.0") -> str:
    return media.carry.payload(version, "big")["key"]


# ----------------------------------------------------------------------------- exfiltration through links


def test_a_piece_linked_to_a_file_of_the_import_machine_is_refused_and_nothing_of_it_reaches_the_store(
    media: Media, far: SeaweedServer, tmp_path: Path
) -> None:
    medium = copy_medium(media.v1, tmp_path / "medium")
    secret = tmp_path / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(random_bytes(PIECE, seed=101))  # the size the index gives: only the link stops it
    piece = pieces_folder(medium, big_key(media)) / "00002"
    piece.unlink()
    piece.symlink_to(secret)

    run = import_(media, far, medium)
    assert leaks(far, run.bucket, needles_of(secret.read_bytes())) == []
    error = one_error(run.proc)
    assert "00002" in error and "symbolic link" in error, error
    nothing_committed(far, run.bucket)


def test_a_piece_hard_linked_to_a_file_of_the_import_machine_is_stopped_by_its_hash_before_a_byte_is_sent(
    media: Media, far: SeaweedServer, tmp_path: Path
) -> None:
    medium = copy_medium(media.v1, tmp_path / "medium")
    secret = tmp_path / "keys" / "decrypt.asc"
    secret.parent.mkdir()
    secret.write_bytes(random_bytes(PIECE, seed=102))
    piece = pieces_folder(medium, big_key(media)) / "00002"
    piece.unlink()
    os.link(secret, piece)  # a regular file of the right size: only the hash before sending stops it
    assert piece.stat().st_nlink == 2 and stat.S_ISREG(piece.lstat().st_mode)

    run = import_(media, far, medium)
    assert leaks(far, run.bucket, needles_of(secret.read_bytes())) == []
    error = one_error(run.proc)
    assert "piece 00002" in error and "does not match the SHA-256 its index gives" in error, error
    assert "nothing of it was sent" in error, error
    nothing_committed(far, run.bucket)


@pytest.mark.parametrize("which", ["bundle folder", "_blobs", "pieces folder"])
def test_a_linked_folder_anywhere_on_the_path_is_refused_even_when_it_leads_to_the_right_bytes(
    media: Media, far: SeaweedServer, tmp_path: Path, which: str
) -> None:
    medium = copy_medium(media.v1, tmp_path / "medium")
    folder = {
        "bundle folder": medium / "demo",
        "_blobs": medium / "demo" / "_blobs",
        "pieces folder": pieces_folder(medium, big_key(media)),
    }[which]
    elsewhere = tmp_path / "elsewhere"
    shutil.move(folder, elsewhere)  # the same files, reached through a link
    folder.symlink_to(elsewhere)

    run = import_(media, far, medium)
    error = one_error(run.proc)
    assert f"{folder} is a symbolic link" in error, error
    assert keys_in(far, run.bucket) == [] and uploads_in(far, run.bucket) == []


@pytest.mark.parametrize("which", ["commit object", "index"])
def test_a_commit_object_or_an_index_that_is_a_link_is_refused(
    media: Media, far: SeaweedServer, tmp_path: Path, which: str
) -> None:
    medium = copy_medium(media.v1, tmp_path / "medium")
    path = (
        medium / "demo" / "1.0.0" / "manifest.json.asc"
        if which == "commit object"
        else index_file(medium, big_key(media))
    )
    real = tmp_path / "outside" / path.name
    real.parent.mkdir()
    shutil.move(path, real)
    path.symlink_to(real)

    run = import_(media, far, medium)
    error = one_error(run.proc)
    assert f"{path} is a symbolic link" in error, error
    assert keys_in(far, run.bucket) == [] and uploads_in(far, run.bucket) == []


# ------------------------------------------------------------------------ nodes that are not regular files


def _plant(path: Path, kind: str) -> None:
    path.unlink()
    if kind == "named pipe":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
        (path / "inside").write_bytes(b"x" * 10)
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero: endless bytes
        except PermissionError:
            pytest.skip("making a device node needs CAP_MKNOD")


@pytest.mark.parametrize("kind", ["named pipe", "folder", "device"])
@pytest.mark.parametrize("where", ["piece", "index", "commit object"])
def test_a_pipe_a_device_or_a_folder_where_a_file_belongs_is_refused_without_blocking(
    media: Media, far: SeaweedServer, tmp_path: Path, kind: str, where: str
) -> None:
    medium = copy_medium(media.v1, tmp_path / "medium")
    path = {
        "piece": pieces_folder(medium, big_key(media)) / "00001",
        "index": index_file(medium, big_key(media)),
        "commit object": medium / "demo" / "1.0.0" / "manifest.json.asc",
    }[where]
    _plant(path, kind)

    run = import_(media, far, medium, "--version", "1.0.0")  # a pipe opened for reading would hang here
    error = one_error(run.proc)
    if where == "commit object" and kind == "folder":  # a folder is no commit object: the version is not there
        assert "no committed version of bundle demo on" in error, error
    else:
        assert f"{path} is a {kind}" in error, error
    assert keys_in(far, run.bucket) == [] and uploads_in(far, run.bucket) == []


# ----------------------------------------------------------------------------- a file changing under us


def _far_store(far: SeaweedServer, bucket: str) -> S3Store:
    return S3Store.from_source(parse_source(make_source(far, bucket, use_writer_identity=True), where="test"))


class _Flips(io.FileIO):
    """A real file that another writer changes in place the moment its first full read ends."""

    def __init__(self, path: Path, offset: int, data: bytes) -> None:
        super().__init__(path, "rb")
        self._path, self._offset, self._data, self.flipped = path, offset, data, False

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        data = super().read(size)
        if not data and not self.flipped:
            fd = os.open(self._path, os.O_WRONLY)
            try:
                os.pwrite(fd, self._data, self._offset)
            finally:
                os.close(fd)
            self.flipped = True
        return data


def test_a_piece_changed_between_its_check_and_its_upload_is_stopped_before_a_changed_byte_leaves(
    far: SeaweedServer, tmp_path: Path
) -> None:
    good = random_bytes(2 * PIECE, seed=103)
    planted = random_bytes(MiB, seed=104)  # what the carrier writes into the second piece once it was checked
    pieces = []
    for n in (1, 2):
        path = tmp_path / f"{n:05d}"
        path.write_bytes(good[(n - 1) * PIECE : n * PIECE])
        opener: Callable[[], Any] = (
            (lambda p=path: _Flips(p, 2 * MiB, planted)) if n == 2 else (lambda p=path: open(p, "rb"))  # noqa: SIM115
        )
        pieces.append(PieceSource(n, PIECE, hashlib.sha256(good[(n - 1) * PIECE : n * PIECE]).hexdigest(),
                                  f"piece {n:05d}", opener))  # fmt: skip
    bucket = new_bucket(far)
    store = _far_store(far, bucket)
    sends: list[str] = []  # every HTTP attempt at a part, retries included
    store.client.meta.events.register("before-send.s3.UploadPart", lambda **kw: sends.append(kw["request"].url))
    with pytest.raises(VerificationError) as refused:
        upload_verified(
            store, "demo/_blobs/x", len(good), hashlib.sha256(good).hexdigest(), pieces, lambda _m: None,
            label="payload",
        )  # fmt: skip
    assert (tmp_path / "00002").read_bytes()[2 * MiB : 3 * MiB] == planted  # the change did happen
    assert leaks(far, bucket, needles_of(planted)) == []
    assert "piece 00002 changed between its check and its upload" in str(refused.value)
    assert len(sends) == 2  # piece 1, then one attempt at piece 2: the refusal is not retried


def test_a_payload_file_changed_between_its_check_and_its_upload_is_stopped_before_a_changed_byte_leaves(
    far: SeaweedServer, tmp_path: Path
) -> None:
    """A payload written by pack --to-dir has only the signed manifest's hash: all of it is checked first."""
    good = random_bytes(20 * MiB, seed=105)
    planted = random_bytes(MiB, seed=106)
    path = tmp_path / "payload"
    path.write_bytes(good)
    opened: list[int] = []

    def opener(offset: int, length: int) -> Callable[[], Any]:
        def open_window() -> Any:
            opened.append(offset)
            if len(opened) == 4:  # the second pass begins: the carrier rewrites the middle of the file
                with open(path, "r+b") as f:
                    f.seek(10 * MiB)
                    f.write(planted)
            f = open(path, "rb")  # noqa: SIM115 - the uploader closes it
            return io.BytesIO(f.read()[offset : offset + length])

        return open_window

    part = 8 * MiB
    pieces = [
        PieceSource(n, min(part, len(good) - off), None, f"bytes {off}-", opener(off, min(part, len(good) - off)))
        for n, off in enumerate(range(0, len(good), part), 1)
    ]
    bucket = new_bucket(far)
    with pytest.raises(VerificationError) as refused:
        upload_verified(
            _far_store(far, bucket), "demo/_blobs/y", len(good), hashlib.sha256(good).hexdigest(), pieces,
            lambda _m: None, label="payload",
        )  # fmt: skip
    assert leaks(far, bucket, needles_of(planted)) == []
    assert "changed between its check and its upload" in str(refused.value)


def test_a_payload_file_that_is_not_the_signed_payload_is_refused_before_the_upload_starts(
    media: Media, far: SeaweedServer, tmp_path: Path
) -> None:
    medium = copy_medium(media.packed, tmp_path / "medium")
    key = media.carry.payload("3.0.0", "big", media.packed)["key"]
    path = payload_path(medium, key)
    planted = random_bytes(path.stat().st_size, seed=107)
    path.write_bytes(planted)

    run = import_(media, far, medium)
    assert leaks(far, run.bucket, needles_of(planted)) == []
    error = one_error(run.proc)
    assert "do not match the signed manifest's SHA-256; nothing was sent" in error, error
    nothing_committed(far, run.bucket)


# --------------------------------------------------------------------------- objects planted in the target


def test_a_same_size_object_planted_at_a_payload_key_is_replaced_not_taken_for_the_payload(
    media: Media, far: SeaweedServer
) -> None:
    big = media.carry.payload("1.0.0", "big")
    bucket = new_bucket(far)
    key = big["key"] if big["key"].startswith("demo/") else f"demo/{big['key']}"
    far.client().put_object(Bucket=bucket, Key=key, Body=random_bytes(big["size"], seed=108))

    run = import_(media, far, media.v1, bucket=bucket)
    ok(run.proc)
    assert "holds other bytes than the signed manifest names; it will be replaced" in run.proc.stderr
    assert "2 payload(s) uploaded" in run.proc.stdout, run.proc.stdout
    body = far.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == big["sha256"]


def test_a_same_size_object_planted_for_a_payload_the_medium_does_not_carry_stops_the_import(
    media: Media, far: SeaweedServer
) -> None:
    """A --since medium relies on the target's copy: one of other bytes must not complete the version."""
    bucket = new_bucket(far)
    ok(import_(media, far, media.v1, bucket=bucket).proc)
    big = media.carry.payload("2.0.0", "big")
    key = big["key"] if big["key"].startswith("demo/") else f"demo/{big['key']}"
    far.client().put_object(Bucket=bucket, Key=key, Body=random_bytes(big["size"], seed=109))

    run = import_(media, far, media.delta, bucket=bucket)
    error = one_error(run.proc)
    assert "part big is neither on" in error, error
    assert "demo/2.0.0/manifest.json.asc" not in keys_in(far, bucket)


# -------------------------------------------------------------------------------------- nonsense indexes


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        doc = doc[step]
    doc[path[-1]] = value


def _huge_numbers(doc: dict[str, Any]) -> None:
    doc["payload"]["size"] = 10**30
    doc["piece_size"] = PIECE


# How each nonsense index is made from a good one: a function that edits the parsed index in place,
# or returns a text that replaces the whole file.
EDITS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "piece_size 0": lambda d: _set(d, ("piece_size",), 0),
    "negative payload size": lambda d: _set(d, ("payload", "size"), -1),
    "negative piece size": lambda d: _set(d, ("pieces", 1, "size"), -5),
    "a piece missing": lambda d: _set(d, ("pieces",), d["pieces"][:-1]),
    "a piece too many": lambda d: d["pieces"].append(
        {**d["pieces"][-1], "name": "00004", "offset": d["payload"]["size"]}
    ),
    "huge numbers": _huge_numbers,
    "huge piece size": lambda d: _set(d, ("piece_size",), 10**30),
    "a 5000-digit number": lambda d: json.dumps(d).replace(
        f'"piece_size": {d["piece_size"]}', '"piece_size": ' + "9" * 5000
    ),
    "non-hex hash": lambda d: _set(d, ("pieces", 0, "sha256"), "z" * 64),
    "../x as a piece name": lambda d: _set(d, ("pieces", 0, "name"), "../x"),
    "an absolute piece name": lambda d: _set(d, ("pieces", 0, "name"), "/etc/shadow"),
    "deep nesting": lambda d: "[" * 200_000 + "]" * 200_000,
    "not JSON": lambda d: "\x00\xff not json",
}


def _edit(doc: dict[str, Any], how: str) -> str | None:
    """Change a parsed index as ``how`` says; a string return replaces the whole file's text."""
    return EDITS[how](doc)


@pytest.mark.parametrize(
    "how",
    [
        "piece_size 0",
        "negative payload size",
        "negative piece size",
        "a piece missing",
        "a piece too many",
        "huge numbers",
        "huge piece size",
        "a 5000-digit number",
        "non-hex hash",
        "../x as a piece name",
        "an absolute piece name",
        "deep nesting",
        "not JSON",
    ],
)
def test_a_nonsense_index_ends_as_one_clear_line(media: Media, far: SeaweedServer, tmp_path: Path, how: str) -> None:
    medium = copy_medium(media.v1, tmp_path / "medium")
    path = index_file(medium, big_key(media))
    doc = json.loads(path.read_text())
    text = _edit(doc, how)
    path.write_text(text if text is not None else json.dumps(doc))

    run = import_(media, far, medium)
    error = one_error(run.proc)
    assert str(path) in error and ("malformed" in error or "another payload" in error), error
    assert keys_in(far, run.bucket) == [] and uploads_in(far, run.bucket) == []


# -------------------------------------------------------------------------------------------- long paths


def _nest(start: Path, depth: int, name_length: int) -> str:
    """Folders ``depth`` deep below ``start`` (made relative to each other: the whole path may pass PATH_MAX)."""
    fd = os.open(start, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(depth):
            name = f"{i:03d}" + "d" * (name_length - 3)
            os.mkdir(name, dir_fd=fd)
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    return "/".join(f"{i:03d}" + "d" * (name_length - 3) for i in range(depth))


def test_a_medium_path_longer_than_path_max_is_one_clear_line(media: Media, far: SeaweedServer, tmp_path: Path) -> None:
    deep = tmp_path / _nest(tmp_path, 20, 250)
    assert len(str(deep)) > os.pathconf("/", "PC_PATH_MAX")
    run = import_(media, far, deep)
    error = one_error(run.proc)
    assert "longer than the file system allows" in error and len(error) < 300, error


def test_junk_nested_past_path_max_on_a_medium_is_walked_without_a_path_and_too_deep_a_tree_is_refused(
    media: Media, far: SeaweedServer, tmp_path: Path
) -> None:
    medium = copy_medium(media.v1, tmp_path / "medium")
    junk = medium / "demo" / "junk"
    junk.mkdir()
    _nest(junk, 20, 250)  # more than 4,096 characters below the medium's root
    ok(import_(media, far, medium).proc)

    _nest(junk / os.listdir(junk)[0], 70, 3)
    error = one_error(import_(media, far, medium).proc)
    assert "nested more than 64 folders deep" in error, error


# --------------------------------------------------------------------------------- pieces of something else


@pytest.mark.parametrize("index", ["as exported", "forged to name the signed payload"])
def test_pieces_of_another_version_under_a_verified_commit_object_are_not_committed(
    media: Media, far: SeaweedServer, tmp_path: Path, index: str
) -> None:
    medium = copy_medium(media.v2, tmp_path / "medium")
    old, new = media.carry.payload("1.0.0", "small"), media.carry.payload("2.0.0", "small")
    shutil.rmtree(pieces_folder(medium, new["key"]))
    shutil.copytree(pieces_folder(media.v1, old["key"]), pieces_folder(medium, new["key"]))
    doc = json.loads(index_file(media.v1, old["key"]).read_text())
    if index != "as exported":
        doc["payload"] = {"sha256": new["sha256"], "size": new["size"]}
        doc["pieces"][0]["size"] = doc["payload"]["size"] = new["size"]
    index_file(medium, new["key"]).write_text(json.dumps(doc))

    run = import_(media, far, medium)
    error = one_error(run.proc)
    if index == "as exported":
        assert "describes another payload than the signed manifest" in error, error
    else:
        assert "do not match the signed manifest's SHA-256" in error or "does not match the SHA-256" in error, error
    key = new["key"] if new["key"].startswith("demo/") else f"demo/{new['key']}"
    assert key not in keys_in(far, run.bucket)
    nothing_committed(far, run.bucket)


def test_a_commit_object_of_another_version_under_this_version_is_refused(
    media: Media, far: SeaweedServer, tmp_path: Path
) -> None:
    medium = copy_medium(media.v2, tmp_path / "medium")
    shutil.copy(media.v1 / "demo" / "1.0.0" / "manifest.json.asc", medium / "demo" / "2.0.0" / "manifest.json.asc")
    run = import_(media, far, medium)
    # The medium's listing verifies each commit object (as check does): the misplaced one is skipped
    # with a warning naming why, and with nothing else on the medium there is nothing to import.
    warnings = [ln for ln in run.proc.stderr.splitlines() if ln.startswith("warning: skipped")]
    assert len(warnings) == 1 and "2.0.0" in warnings[0] and "misplaced" in warnings[0], run.proc.stderr
    assert "no committed version of bundle demo" in one_error(run.proc)
    assert keys_in(far, run.bucket) == []


# ---------------------------------------------------------------------------------- export writes nothing
# through a link already on the medium


def _export_to(media: Media, medium: Path) -> Any:
    return run_cli("export", "--config", media.carry.reader_config(), "--to", medium, "--version", "1.0.0",
                   "--piece-size", "5MiB", timeout=120)  # fmt: skip


def test_export_refuses_a_linked_folder_on_the_medium_and_writes_nothing_through_it(
    media: Media, tmp_path: Path
) -> None:
    medium, outside = tmp_path / "medium", tmp_path / "etc"
    outside.mkdir()
    (medium / "demo").mkdir(parents=True)
    (medium / "demo" / "_blobs").symlink_to(outside)

    error = one_error(_export_to(media, medium))
    assert f"{medium / 'demo' / '_blobs'} is a symbolic link" in error, error
    assert list(outside.iterdir()) == []


def test_export_replaces_planted_file_links_and_never_writes_through_them(media: Media, tmp_path: Path) -> None:
    medium, outside = tmp_path / "medium", tmp_path / "outside"
    outside.mkdir()
    key = big_key(media)
    planted = {
        pieces_folder(medium, key) / "00001": outside / "piece",
        index_file(medium, key): outside / "index",
        medium / "demo" / "1.0.0" / "manifest.json.asc": outside / "commit",
    }
    for link, target in planted.items():
        target.write_bytes(b"precious " + target.name.encode())
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    (medium / "demo" / "_records").symlink_to(outside)  # where export puts its record on the medium

    run = ok(_export_to(media, medium))
    assert "warning: the export record was not stored in folder" in run.stderr
    for link, target in planted.items():
        assert target.read_bytes() == b"precious " + target.name.encode()
        assert stat.S_ISREG(link.lstat().st_mode), f"{link} is still a link"
    assert sorted(p.name for p in outside.iterdir()) == ["commit", "index", "piece"]
    ok(run_cli("verify", "--config", media.carry.verifier_config(), "--from-dir", medium, "--version", "1.0.0"))


# ------------------------------------------------------------------------------------- verify --from-dir


@pytest.mark.parametrize("which", ["payload file", "piece"])
def test_verify_from_dir_reads_no_link(media: Media, tmp_path: Path, which: str) -> None:
    source = media.packed if which == "payload file" else media.v1
    version = "3.0.0" if which == "payload file" else "1.0.0"
    folder = copy_medium(source, tmp_path / "folder")
    key = media.carry.payload(version, "big", source)["key"]
    path = payload_path(folder, key) if which == "payload file" else pieces_folder(folder, key) / "00001"
    real = tmp_path / "outside"
    shutil.move(path, real)  # the right bytes, through a link
    path.symlink_to(real)

    run = run_cli("verify", "--config", media.carry.verifier_config(), "--from-dir", folder, "--version", version)
    error = one_error(run)
    assert f"{path} is a symbolic link" in error, error
