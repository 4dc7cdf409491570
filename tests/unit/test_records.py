"""Transfer records without servers: key layout, content, refused writes, listing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from offline_bundle.bundle.records import describe, list_records, make_record, print_record_json, summary, write_record
from offline_bundle.core.config import Source
from offline_bundle.core.manifest import Encryption, Manifest, Part, Payload
from offline_bundle.errors import AccessDeniedError
from offline_bundle.storage.folder import DirStore

SOURCE = Source(bucket="b-records", name="demo", prefix="transfers/")


def manifest(version: str = "1.0.0") -> Manifest:
    parts = tuple(
        Part(
            name,
            f"{name}/",
            Payload(f"_blobs/{c * 32}", 10, c * 64),
            Encryption(),
            (),
        )
        for name, c in (("big", "a"), ("small", "b"))
    )
    return Manifest("demo", version, "2026-01-01T00:00:00Z", parts)


def test_a_record_names_what_moved_who_verified_and_who_ran_it() -> None:
    env = {"BUILD_PIPELINE_NAME": "p", "BUILD_JOB_NAME": "j", "BUILD_NAME": "7", "BUILD_TEAM_NAME": "t"}
    when = datetime(2026, 11, 25, 21, 30, 0, 123456, tzinfo=UTC)
    rec = make_record("import", manifest(), signer="F" * 40, parts=["small"], details={"from": "/m"}, env=env, now=when)
    doc = rec.to_json()
    assert doc["event"] == "import" and doc["version"] == "1.0.0" and doc["signer"] == "F" * 40
    assert doc["at"] == "2026-11-25T21:30:00.123456Z"
    assert [p["name"] for p in doc["parts"]] == ["small"] and doc["parts"][0]["payload"]["sha256"] == "b" * 64
    assert doc["by"]["build"] == "t/p/j #7" and doc["by"]["host"]
    assert doc["details"] == {"from": "/m"}
    assert re.fullmatch(r"transfers/demo/_records/20261125T213000Z-import-[0-9a-f]{8}\.json", rec.key(SOURCE))
    assert "t/p/j #7" in describe(doc) and "small=bbbbbbbbbbbb" in describe(doc)


class RefusingStore(DirStore):
    def put_bytes(self, key: str, data: bytes, *, only_if_absent: bool = False, metadata: object = None) -> None:
        raise AccessDeniedError(f"writing {key}: S3 answered AccessDenied (HTTP 403)")


def test_a_refused_write_is_a_warning_and_the_record_itself_goes_to_stderr(tmp_path: Path) -> None:
    # Stored nowhere: the build log is the record's one copy, so its JSON is printed without --verbose.
    lines: list[str] = []
    write_record(RefusingStore(str(tmp_path)), SOURCE, "get", manifest(), signer=None, log=lines.append, env={})
    assert lines[0].startswith("warning: the get record was not stored") and "may not write" in lines[0]
    assert lines[1].startswith("record: get of demo 1.0.0 by ") and "stored at nowhere" in lines[1]
    assert lines[2].startswith("record: {") and json.loads(lines[2][len("record: ") :])["signature"] == "unsigned"
    assert len(lines) == 3


def test_a_stored_record_is_one_summary_line_and_its_json_only_when_verbose(tmp_path: Path) -> None:
    env = {"BUILD_PIPELINE_NAME": "p", "BUILD_JOB_NAME": "j", "BUILD_NAME": "7", "BUILD_TEAM_NAME": "t"}
    store = DirStore(str(tmp_path))
    lines: list[str] = []
    rec = write_record(store, SOURCE, "import", manifest(), signer="F" * 40, log=lines.append, env=env)
    where = tmp_path / rec.key(SOURCE)
    assert lines == [f"record: import of demo 1.0.0 by t/p/j #7, 2 part(s), 20 B, signer {'F' * 40}, stored at {where}"]
    assert json.loads(where.read_text()) == rec.to_json()
    try:
        print_record_json(True)
        lines.clear()
        write_record(store, SOURCE, "import", manifest(), signer="F" * 40, log=lines.append, env=env)
    finally:
        print_record_json(None)
    assert lines[0].startswith("record: import of demo") and json.loads(lines[1].removeprefix("record: "))["bundle"]
    assert len(lines) == 2


class Refusing(DirStore):
    def put_bytes(self, key: str, data: bytes, **kw: object) -> None:
        raise PermissionError(13, "Permission denied", key)


def test_a_record_stored_nowhere_prints_its_json_in_concourse_and_only_with_verbose_on_the_command_line(
    tmp_path: Path,
) -> None:
    store = Refusing(str(tmp_path))
    lines: list[str] = []
    write_record(store, SOURCE, "get", manifest(), signer="F" * 40, log=lines.append)  # Concourse: no flag
    assert [ln.split(" ")[0] for ln in lines] == ["warning:", "record:", "record:"]
    assert "nowhere (the JSON follows)" in lines[1] and json.loads(lines[2].removeprefix("record: "))["event"] == "get"
    try:
        print_record_json(False)  # the command line without --verbose
        lines.clear()
        write_record(store, SOURCE, "unpack", manifest(), signer="F" * 40, log=lines.append)
    finally:
        print_record_json(None)
    assert len(lines) == 2 and "nowhere (--verbose prints it)" in lines[1], lines


def test_the_summary_line_says_who_how_much_and_whose_signature() -> None:
    rec = make_record("export", manifest(), signer=None, env={"HOSTNAME": "x"}).to_json()
    rec["by"] = {"user": "alice", "host": "jump1"}
    rec["parts"][0]["payload"]["size"] = 2_254_857_830
    line = summary(rec, ["s3://b/transfers/demo/_records/x.json", "/media/usb/transfers/demo/_records/x.json"])
    assert line == (
        "export of demo 1.0.0 by alice@jump1, 2 part(s), 2.1 GiB, UNSIGNED, "
        "stored at s3://b/transfers/demo/_records/x.json, /media/usb/transfers/demo/_records/x.json"
    )
    rec["signature"] = "checked by the get that wrote the folder; not checked again by publish"
    assert ", signature checked by the get that wrote the folder;" in summary(rec, [])


def test_records_are_listed_oldest_first_and_filtered_by_version(tmp_path: Path) -> None:
    store = DirStore(str(tmp_path))
    for v in ("1.0.1", "1.0.0", "1.0.1"):
        write_record(store, SOURCE, "export", manifest(v), signer="A" * 40, log=lambda _m: None, env={})
    store.put_bytes("transfers/demo/_records/zzz-broken.json", b"not json")
    listed = list_records(SOURCE, store)
    docs = [r.doc for r in listed if r.doc is not None]
    assert sorted(d["version"] for d in docs) == ["1.0.0", "1.0.1", "1.0.1"]
    assert [d["at"] for d in docs] == sorted(d["at"] for d in docs)
    assert [r.key for r in listed if r.doc is None] == ["transfers/demo/_records/zzz-broken.json"]
    assert len(list_records(SOURCE, store, version="1.0.1")) == 2
