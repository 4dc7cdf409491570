"""The manifest parser: a round trip is exact, anything malformed is a VerificationError."""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offline_bundle.core.manifest import Encryption, FileEntry, Manifest, Part, Payload, parse_manifest
from offline_bundle.errors import VerificationError

SHA = "ab" * 32
PAYLOAD_ID = "0123456789abcdef" * 2


def sample(**over: object) -> Manifest:
    files = (
        FileEntry("bin", "dir", 0o755, 1),
        FileEntry("bin/run", "file", 0o755, 2, 3, SHA),
        FileEntry("link", "symlink", 0o777, 3, target="bin/run"),
    )
    payload = Payload("_blobs/" + PAYLOAD_ID, 99, SHA)
    part = Part("tile", "tiles/", payload, Encryption(("F" * 40,), False, "none"), files)
    fields = {"name": "demo", "version": "1.0.0", "created_at": "2026-11-25T00:00:00Z", "parts": (part,)}
    fields.update(over)
    return Manifest(**fields)  # type: ignore[arg-type]


def test_round_trip_is_exact_with_one_file_entry_per_line() -> None:
    m = sample(created_by={"build_id": "7"})
    data = m.to_json_bytes()
    lines = data.split(b"\n")
    assert len(lines) == 7  # head, the part, its three files, the end of the files, the end of the parts
    assert all(not line.startswith(b"-") and line == line.rstrip() for line in lines)  # clear-signing keeps them
    assert parse_manifest(data) == m
    assert parse_manifest(data).to_json_bytes() == data


def test_the_text_in_pieces_and_a_parts_head_are_what_the_whole_says() -> None:
    m = sample(created_by={"build_id": "7"})
    assert b"".join(m.json_pieces()) == m.to_json_bytes()
    part = m.parts[0]
    assert part.head_json() == {k: v for k, v in part.to_json().items() if k != "files"}


def test_a_line_too_long_to_clear_sign_is_refused() -> None:
    from offline_bundle.errors import ConfigError

    with pytest.raises(ConfigError, match="clear-signing"):
        sample(created_by={"build_pipeline_instance_vars": "x" * 20_000}).to_json_bytes()


def mutate(path: list[object], value: object) -> bytes:
    doc = json.loads(sample().to_json_bytes())
    target = doc
    for p in path[:-1]:
        target = target[p]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (["format_version"], 2, "format_version 2 is not supported"),
        (["format_version"], "1", "not supported"),
        (["name"], "../x", "naming rule"),
        (["parts", 0, "payload", "size"], "99", "wrong type"),
        (["parts", 0, "payload", "sha256"], "zz", "bad size or sha256"),
        (["parts", 0, "destination"], "/abs/", "safe relative prefix"),
        (["parts", 0, "name"], "manifest.json", "not a valid part name"),
        (["parts", 0, "files", 1, "path"], "../x", "unsafe path"),
        (["parts", 0, "files", 1, "path"], "/x", "unsafe path"),
        (["parts", 0, "files", 1, "path"], "bin/./run", "unsafe path"),
        (["parts", 0, "files", 1, "type"], "fifo", "is not one of"),
        (["parts", 0, "files", 1, "mode"], "999", "not octal"),
        (["parts", 0, "files", 1, "size"], -1, "bad size"),
        (["parts", 0, "files", 2, "target"], "../../etc", "points outside"),
        (["parts", 0, "files", 0, "type"], "file", "is missing"),
        (["parts", 0, "files", 0, "path"], "other", "not listed as a dir"),
    ],
)
def test_malformed_fields_are_refused(path: list[object], value: object, words: str) -> None:
    with pytest.raises(VerificationError, match=words):
        parse_manifest(mutate(path, value))


@pytest.mark.parametrize(
    "key",
    [
        "demo/_blobs/" + PAYLOAD_ID,  # the bundle folder spelt out: keys are relative to it
        "/_blobs/" + PAYLOAD_ID,
        "../other/_blobs/" + PAYLOAD_ID,
        "_blobs/../../other/_blobs/" + PAYLOAD_ID,
        "_blobs/" + PAYLOAD_ID + "/../x",
        "_records/" + PAYLOAD_ID,
        "1.0.0/manifest.json.asc",
        "_blobs/",
        "_blobs/" + PAYLOAD_ID[:31],  # too short
        "_blobs/" + "a" * 65,  # too long
        "_blobs/" + PAYLOAD_ID.upper(),
        "_blobs/" + PAYLOAD_ID + "\n",
        "_blobs/" + PAYLOAD_ID + ".index.json",
        "_blobs/" + PAYLOAD_ID + "/x",
        "_blobs//" + PAYLOAD_ID,
        "",
    ],
)
def test_a_payload_key_outside_the_bundles_blobs_folder_is_refused(key: str) -> None:
    with pytest.raises(VerificationError, match=r"is not _blobs/<id> \(32 to 64 lowercase hex digits\)"):
        parse_manifest(mutate(["parts", 0, "payload", "key"], key))


@pytest.mark.parametrize("key", ["_blobs/" + "0" * 32, "_blobs/" + "f" * 64, "_blobs/" + SHA])
def test_payload_ids_of_32_to_64_hex_digits_are_read(key: str) -> None:
    assert parse_manifest(mutate(["parts", 0, "payload", "key"], key)).parts[0].payload.key == key


def test_duplicate_paths_and_parts() -> None:
    doc = json.loads(sample().to_json_bytes())
    doc["parts"][0]["files"].append(doc["parts"][0]["files"][1])
    with pytest.raises(VerificationError, match="twice"):
        parse_manifest(json.dumps(doc).encode())
    doc = json.loads(sample().to_json_bytes())
    doc["parts"].append(doc["parts"][0])
    with pytest.raises(VerificationError, match="share a name"):
        parse_manifest(json.dumps(doc).encode())


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    with contextlib.suppress(VerificationError):
        parse_manifest(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300)
@given(st.data())
def test_any_field_replaced_by_any_json_is_parsed_or_refused_cleanly(data: st.DataObject) -> None:
    doc = json.loads(sample().to_json_bytes())
    # Walk to a random container and replace one of its values.
    node = doc
    while True:
        keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        k = data.draw(st.sampled_from(keys))
        if isinstance(node[k], (dict, list)) and node[k] and data.draw(st.booleans()):
            node = node[k]
            continue
        node[k] = data.draw(json_values)
        break
    with contextlib.suppress(VerificationError):
        parse_manifest(json.dumps(doc).encode())


_texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_hex = st.one_of(st.none(), st.text("0123456789abcdef", min_size=64, max_size=64))


@settings(max_examples=400)
@given(
    path=_texts,
    kind=st.sampled_from(["file", "dir", "symlink"]),
    mode=st.integers(0, 0o7777),
    mtime=st.integers(-(2**40), 2**40),
    size=st.integers(0, 2**50),
    sha256=_hex,
    probe=_hex,
    target=st.one_of(st.none(), _texts),
)
def test_the_fast_entry_line_equals_the_json_encoder(
    path: str, kind: str, mode: int, mtime: int, size: int, sha256: str | None, probe: str | None, target: str | None
) -> None:
    from offline_bundle.core.manifest import _dump, _entry_line

    f = FileEntry(path, kind, mode, mtime, size, sha256, target, probe)
    assert _entry_line(f) == _dump(f.to_json())


def test_a_payload_key_resolves_below_the_bundle_folder_of_whichever_store_reads_it() -> None:
    from offline_bundle.bundle.commit import new_payload_key, payload_object_key
    from offline_bundle.core.config import Source

    payload = Payload("_blobs/" + PAYLOAD_ID, 1, SHA)
    assert payload_object_key(Source(bucket="near", name="demo"), payload) == "demo/_blobs/" + PAYLOAD_ID
    far = Source(bucket="far", name="demo", prefix="air/gapped-")
    assert payload_object_key(far, payload) == "air/gapped-demo/_blobs/" + PAYLOAD_ID
    with pytest.raises(VerificationError, match="is not _blobs/<id>"):
        payload_object_key(far, Payload("../other/_blobs/" + PAYLOAD_ID, 1, SHA))
    fresh = {new_payload_key() for _ in range(1000)}
    assert len(fresh) == 1000 and all(re.fullmatch(r"_blobs/[0-9a-f]{32}", k) for k in fresh)


def test_a_bad_file_entry_is_named_by_its_place_and_entries_elsewhere_stay_maps() -> None:
    """File entries become FileEntry objects while the JSON is read (memory); one that does not parse
    is still refused with its place, and an object shaped like an entry outside a part's files is
    not taken for one."""
    with pytest.raises(VerificationError, match=r"parts\[0\]\.files\[1\]\.mtime is missing"):
        parse_manifest(mutate(["parts", 0, "files", 1], {"path": "bin/run", "type": "file", "mode": "0755"}))
    entry_shaped = {"path": "x", "type": "dir", "mode": "0755", "mtime": 1}
    with pytest.raises(VerificationError, match=r"manifest\.tool has the wrong type"):
        parse_manifest(mutate(["tool"], entry_shaped))  # an entry where a map of words belongs: refused
    m = parse_manifest(mutate(["created_by"], {"path": "x", "type": "dir", "mode": "0755"}))
    assert m.created_by == {"path": "x", "type": "dir", "mode": "0755"}  # no mtime: not an entry, a map
    assert all(isinstance(f, FileEntry) for f in m.parts[0].files)
