"""What the record-writing commands print: one summary line per transfer record, the JSON on request;
and ``export --piece-size`` over FAT32's limit warns and carries on. Real SeaweedFS, real gpg keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.cli import ok, run_cli, write_yaml
from tests.support.concourse import make_source, parse_stdout, run_asset
from tests.support.gpgkeys import GpgKeys
from tests.support.seaweed import SeaweedServer, new_bucket_name
from tests.support.sides import Sides, small_tree

SUMMARY = re.compile(
    r"^record: (?P<event>\w+) of demo 1\.0\.0 by (?P<who>\S+( #\d+)?), (?P<parts>\d+) part\(s\), "
    r"(?P<size>[\d.]+ (B|KiB|MiB)), signer (?P<signer>[0-9A-F]{40}), stored at (?P<where>.+)$",
    re.M,
)


def record_lines(stderr: str) -> tuple[list[re.Match[str]], list[dict[str, object]]]:
    summaries = list(SUMMARY.finditer(stderr))
    docs = [json.loads(ln.removeprefix("record: ")) for ln in stderr.splitlines() if ln.startswith("record: {")]
    return summaries, docs


def test_records_are_one_line_each_and_their_json_with_verbose(
    sides: Sides, seaweed: SeaweedServer, gpg_keys: GpgKeys, tmp_path: Path
) -> None:
    parts = [{"name": "tiles", "path": "tiles"}, {"name": "notes", "path": "notes"}]
    sides.put(small_tree(tmp_path / "build", tiles="t" * 3000, notes="n"), {"version": "1.0.0", "parts": parts})
    fingerprint = gpg_keys.signer.fingerprint

    # Concourse `in` with an identity that may write the record: the summary line, no JSON.
    writer_get = make_source(
        seaweed,
        sides.bucket,
        use_writer_identity=True,
        trusted_public_keys=[gpg_keys.signer.public_armored],
        decryption_private_key=gpg_keys.recipient.secret_armored,
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    got = run_asset("in", {"source": writer_get, "version": {"version": "1.0.0"}}, dest)
    assert parse_stdout(got)["version"] == {"version": "1.0.0"}
    (line,), docs = record_lines(got.stderr)
    assert docs == [] and not re.search(r"^record: \{", got.stderr, re.M)
    assert (line["event"], line["parts"], line["signer"]) == ("get", "2", fingerprint)
    assert line["who"] == "main/offline-bundle-test/publish-bundle #17"  # the build, as BUILD_* say
    assert re.fullmatch(rf"s3://{sides.bucket}/demo/_records/\d{{8}}T\d{{6}}Z-get-[0-9a-f]{{8}}\.json", line["where"])
    key = line["where"].removeprefix(f"s3://{sides.bucket}/")
    stored = json.loads(sides.client().get_object(Bucket=sides.bucket, Key=key)["Body"].read())
    assert stored["event"] == "get" and stored["signer"] == fingerprint

    # export: the record goes to the bucket and onto the medium; both named on the one line.
    config = write_yaml(tmp_path / "connected.yml", writer_get)
    medium = tmp_path / "medium"
    run = ok(run_cli("export", "--config", config, "--to", medium))
    (line,), docs = record_lines(run.stderr)
    assert docs == [] and line["event"] == "export" and line["who"].count("@") == 1
    places = line["where"].split(", ")
    assert places[0].startswith(f"s3://{sides.bucket}/demo/_records/") and places[1].startswith(f"{medium}/demo/")
    assert Path(places[1]).is_file()

    # import with --verbose: the summary line, then the record itself.
    far_bucket = new_bucket_name()
    seaweed.client().create_bucket(Bucket=far_bucket)
    far = write_yaml(tmp_path / "far.yml", {**writer_get, "bucket": far_bucket})
    run = ok(run_cli("import", "--config", far, "--from", medium, "--verbose"))
    (line,), (doc,) = record_lines(run.stderr)
    assert line["event"] == doc["event"] == "import" and doc["signer"] == fingerprint
    assert run.stderr.index(line.group(0)) < run.stderr.index("record: {")


def test_a_piece_size_over_fat32s_limit_warns_and_the_export_proceeds(sides: Sides, tmp_path: Path) -> None:
    sides.put(
        small_tree(tmp_path / "build", tiles="t"), {"version": "1.0.0", "parts": [{"name": "tiles", "path": "tiles"}]}
    )
    config = write_yaml(tmp_path / "c.yml", {**sides.get_source, "decryption_private_key": None})
    medium = tmp_path / "medium"
    run = ok(run_cli("export", "--config", config, "--to", medium, "--piece-size", "4GiB"))
    warnings = [ln for ln in run.stderr.splitlines() if "FAT32" in ln]
    assert warnings == [
        "warning: --piece-size 4GiB is over 4 GiB - 1 byte: a FAT32 medium cannot hold such a piece "
        "(use exFAT, ext4 or NTFS, or --piece-size 4000MiB)"
    ]
    assert (medium / "demo" / "1.0.0" / "manifest.json.asc").is_file()
    quiet = ok(run_cli("export", "--config", config, "--to", tmp_path / "m2", "--piece-size", "4095MiB"))
    assert "FAT32" not in quiet.stderr
