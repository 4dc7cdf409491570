"""Carrying bundles across: export/import through a temporary folder as the medium, and mirror, between
two real SeaweedFS stores of this module's own ("near" and "far", each on its own ports).

The CLI runs as a subprocess, as an operator runs it; kills are real SIGKILLs of that process. While
export and import run, a sampler watches the medium, TMPDIR and the process's memory, so the disk bound
("never more than one piece beyond the pieces themselves") is measured, not assumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.concourse import make_source, parse_stdout, record_output, run_asset
from tests.support.gpgkeys import GpgKeys
from tests.support.paths import venv_bin
from tests.support.seaweed import SeaweedServer, new_bucket_name

pytestmark = pytest.mark.integration

MiB = 1 << 20
PIECE = 64 * MiB
BIG = 300 * 1000 * 1000  # the 300 MB bundle
SMALL_BIG = 12 * MiB + 5  # the large part of the quick bundles: three 5 MiB pieces
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The S3 secrets of every config this module writes (the far store's are not in the suite-wide audit).
SECRETS: set[str] = set()


# ---------------------------------------------------------------------------------------------- helpers


def _server(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[SeaweedServer]:
    server = SeaweedServer.create(tmp_path_factory.mktemp(name))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def near_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """The connected side's store, this module's own: its 300 MB stay out of the session's SeaweedFS."""
    yield from _server(tmp_path_factory, "near-seaweed")


@pytest.fixture(scope="module")
def far(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """The air-gapped side's store: a second SeaweedFS with its own ports, data and credentials."""
    yield from _server(tmp_path_factory, "far-seaweed")


def new_bucket(server: SeaweedServer) -> str:
    server.ensure_running()
    name = new_bucket_name()
    server.client().create_bucket(Bucket=name)
    return name


@dataclass
class Side:
    """Config files for one store: what each role of the CLI gets (least privileges where it matters)."""

    server: SeaweedServer
    bucket: str
    keys: GpgKeys
    folder: Path

    def config(self, name: str, identity: str = "writer", **extra: Any) -> Path:
        source = make_source(
            self.server,
            self.bucket,
            use_readonly_identity=identity == "ro",
            use_writer_identity=identity == "writer",
            **extra,
        )
        SECRETS.add(source["secret_access_key"])
        path = self.folder / f"{self.bucket}-{name}.yml"
        path.write_text(yaml.safe_dump(source))
        path.chmod(0o600)
        return path

    def put_config(self) -> Path:
        return self.config(
            "put",
            recipient_public_keys=[self.keys.recipient.public_armored],
            signing_private_key=self.keys.signer.secret_armored,
        )

    def reader_config(self, identity: str = "writer", signer: str = "signer") -> Path:
        return self.config(
            f"read-{identity}-{signer}", identity, trusted_public_keys=[getattr(self.keys, signer).public_armored]
        )

    def get_source(self) -> dict[str, Any]:
        return make_source(
            self.server,
            self.bucket,
            use_readonly_identity=True,
            trusted_public_keys=[self.keys.signer.public_armored],
            decryption_private_key=self.keys.recipient.secret_armored,
        )

    def client(self) -> Any:
        return self.server.client()

    def keys_under(self, prefix: str = "demo/") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def uploads(self) -> list[dict[str, Any]]:
        return self.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])

    def sha256_of(self, key: str) -> str:
        body = self.client().get_object(Bucket=self.bucket, Key=key)["Body"]
        h = hashlib.sha256()
        while chunk := body.read(4 * MiB):
            h.update(chunk)
        return h.hexdigest()


def cli_env(tmpdir: Path) -> dict[str, str]:
    """A clean environment (no OFFLINE_BUNDLE_*/AWS_* of the test process); TMPDIR is watched by the sampler."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    return {"PATH": f"{venv_bin()}:{SYSTEM_PATH}", "LANG": "C.UTF-8", "HOME": str(tmpdir), "TMPDIR": str(tmpdir)}


def argv(*args: str | Path) -> list[str]:
    return [str(venv_bin() / "offline-bundle"), *(str(a) for a in args)]


def recorded(*texts: str) -> None:
    """Into the suite-wide secrets audit, and checked here against this module's S3 secrets."""
    record_output(*texts)
    assert not [s for s in SECRETS for t in texts if s in t], "an S3 secret was printed"


def cli(*args: str | Path, tmpdir: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv(*args), env=cli_env(tmpdir), capture_output=True, text=True, timeout=600)
    recorded(proc.stdout, proc.stderr)
    if ok:
        assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, f"{proc.stdout}\n{proc.stderr}"
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def random_file(path: Path, size: int, seed: int) -> str:
    """Random bytes quickly (a seeded PRNG, not the kernel's), in 16 MiB blocks; returns their SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = rng.randbytes(min(left, 16 * MiB))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def pack(config: Path, build: Path, version: str, tmpdir: Path) -> None:
    cli("pack", "--config", config, "--base", build, "--part", "big=big", "--part", "small=small",
        "--version", version, tmpdir=tmpdir)  # fmt: skip


def manifest_of(side: Side, version: str) -> dict[str, Any]:
    body = side.client().get_object(Bucket=side.bucket, Key=f"demo/{version}/manifest.json.asc")["Body"].read()
    text = body.split(b"\n\n", 1)[1].split(b"\n-----BEGIN PGP SIGNATURE", 1)[0]  # the clear-signed JSON
    return json.loads(text)


def payload(manifest: dict[str, Any], part: str) -> dict[str, Any]:
    """A part's payload with its object key (in the store and on the medium): the manifest's is relative."""
    found = next(p["payload"] for p in manifest["parts"] if p["name"] == part)
    return {**found, "key": "demo/" + found["key"]}


def pieces_of(medium: Path, key: str) -> Path:
    return medium / (key + ".pieces")


def file_sizes(root: Path) -> dict[str, int]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # renamed between the listing and the stat
                out[os.path.join(dirpath, name)] = os.stat(os.path.join(dirpath, name)).st_size
    return out


@dataclass
class Samples:
    count: int = 0
    max_medium_bytes: int = 0
    max_file: int = 0
    max_tmp_files: int = 0
    max_tmpdir_bytes: int = 0
    max_rss: int = 0
    medium_changed: bool = False
    first_medium: dict[str, int] | None = field(default=None, repr=False)


def watch(proc: subprocess.Popen[str], medium: Path, tmpdir: Path, interval: float = 0.01) -> Samples:
    """Sample disk use and memory of a running CLI until it exits (in this thread)."""
    s = Samples()
    while proc.poll() is None:
        files = file_sizes(medium)
        if s.first_medium is None:
            s.first_medium = files
        s.medium_changed |= files != s.first_medium
        s.max_medium_bytes = max(s.max_medium_bytes, sum(files.values()))
        s.max_file = max([s.max_file, *files.values()])
        s.max_tmp_files = max(s.max_tmp_files, len([p for p in files if os.path.basename(p).startswith(".tmp-")]))
        s.max_tmpdir_bytes = max(s.max_tmpdir_bytes, sum(file_sizes(tmpdir).values()))
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            s.max_rss = max(s.max_rss, int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024)  # type: ignore[union-attr]
        except (OSError, AttributeError):
            pass
        s.count += 1
        time.sleep(interval)
    return s


def run_watched(*args: str | Path, medium: Path, tmpdir: Path) -> tuple[subprocess.CompletedProcess[str], Samples]:
    proc = subprocess.Popen(argv(*args), env=cli_env(tmpdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: dict[str, str] = {}
    reader = threading.Thread(target=lambda: out.update(zip(("stdout", "stderr"), proc.communicate(), strict=True)))
    reader.start()
    samples = watch(proc, medium, tmpdir)
    reader.join()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out["stdout"], out["stderr"])
    recorded(done.stdout, done.stderr)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done, samples


def start_and_kill_when(args: list[str | Path], tmpdir: Path, ready: Any, timeout: float = 120) -> None:
    """Run the CLI and SIGKILL it (and its children) as soon as ``ready()`` holds; fail if it finishes first."""
    log = tmpdir / "killed-run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv(*args), env=cli_env(tmpdir), stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"finished before it could be killed:\n{log.read_text()}"
            assert time.monotonic() < deadline, "timed out waiting to kill"
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and any gpg it started: its own process group
        proc.wait()
        recorded(log.read_text())


# ----------------------------------------------------------------------------------------- the bundles


@dataclass
class Bundle:
    side: Side
    version: str
    manifest: dict[str, Any]
    data_sha256: str  # of big/data.bin, the large file


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("transfer")


@pytest.fixture(scope="module")
def big_bundle(near_server: SeaweedServer, gpg_keys: GpgKeys, work: Path) -> Bundle:
    """Version 1.0.0 of a 300 MB bundle in the near store: a 300 MB random file and a small part."""
    side = Side(near_server, new_bucket(near_server), gpg_keys, work)
    build = work / "big-build"
    digest = random_file(build / "big" / "data.bin", BIG, seed=300)
    random_file(build / "small" / "notes.txt", 2000, seed=3)
    pack(side.put_config(), build, "1.0.0", work / "tmp-pack")
    (build / "big" / "data.bin").unlink()  # 300 MB less on disk while the module runs
    return Bundle(side, "1.0.0", manifest_of(side, "1.0.0"), digest)


@dataclass
class Exported:
    medium: Path
    run: subprocess.CompletedProcess[str]
    samples: Samples


@pytest.fixture(scope="module")
def big_medium(big_bundle: Bundle, work: Path) -> Exported:
    """The 300 MB bundle exported in 64 MiB pieces, with disk use and memory sampled while it ran."""
    medium = work / "medium-300"
    run, samples = run_watched(
        "export", "--config", big_bundle.side.reader_config(), "--to", medium, "--piece-size", "64MiB",
        medium=medium, tmpdir=work / "tmp-export",
    )  # fmt: skip
    return Exported(medium, run, samples)


def quick_bundle(side_server: SeaweedServer, keys: GpgKeys, folder: Path, versions: dict[str, str]) -> Side:
    """A near bucket with one version per entry: a 12 MiB part that never changes, and a small part."""
    side = Side(side_server, new_bucket(side_server), keys, folder)
    build = folder / f"build-{side.bucket}"
    random_file(build / "big" / "data.bin", SMALL_BIG, seed=12)
    for version, text in versions.items():
        (build / "small").mkdir(parents=True, exist_ok=True)
        (build / "small" / "notes.txt").write_text(text)
        pack(side.put_config(), build, version, folder / "tmp")
    return side


# ------------------------------------------------------------------------------------------------ tests


def test_a_300mb_bundle_goes_across_in_64mib_pieces_with_bounded_disk_use(
    big_bundle: Bundle, big_medium: Exported, far: SeaweedServer, gpg_keys: GpgKeys, work: Path, tmp_path: Path
) -> None:
    medium, samples = big_medium.medium, big_medium.samples
    big = payload(big_bundle.manifest, "big")
    folder = pieces_of(medium, big["key"])
    pieces = sorted(p for p in os.listdir(folder) if p != "SHA256SUMS")
    assert pieces == ["00001", "00002", "00003", "00004", "00005"]  # 300 MB in 64 MiB pieces
    sizes = [(folder / p).stat().st_size for p in pieces]
    assert sizes[:-1] == [PIECE] * 4 and sum(sizes) == big["size"]
    # An operator can check every piece by hand, and the pieces joined are the payload.
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == 5, check.stdout + check.stderr
    joined = hashlib.sha256()
    for p in pieces:
        with open(folder / p, "rb") as f:
            while chunk := f.read(8 * MiB):
                joined.update(chunk)
    assert joined.hexdigest() == big["sha256"]
    assert (medium / "demo" / "1.0.0" / "manifest.json.asc").exists()

    # Disk use while exporting: the pieces themselves plus at most one piece in progress; nothing elsewhere.
    final = sum(file_sizes(medium).values())
    assert samples.count > 20, "the sampler saw too little of the export"
    assert samples.max_tmp_files <= 1
    assert samples.max_file <= PIECE
    assert samples.max_medium_bytes <= final + 64 * 1024
    assert samples.max_tmpdir_bytes < MiB
    # Memory: the interpreter and boto3 take ~50 MiB; a piece held in memory would add 64 MiB more.
    assert samples.max_rss < 100 * MiB, f"export held {samples.max_rss / MiB:.0f} MiB"

    # Import into the far store: nothing written locally, the medium untouched.
    far_side = Side(far, new_bucket(far), gpg_keys, tmp_path)
    run, isamples = run_watched(
        "import", "--config", far_side.reader_config(), "--from", medium, medium=medium, tmpdir=tmp_path / "tmp"
    )
    assert "2 payload(s) uploaded (6 piece(s) sent, 0 resumed), 0 already there" in run.stdout, run.stdout
    assert isamples.count > 20 and not isamples.medium_changed
    assert isamples.max_tmpdir_bytes < MiB
    assert isamples.max_rss < 100 * MiB, f"import held {isamples.max_rss / MiB:.0f} MiB"
    for part in ("big", "small"):
        p = payload(big_bundle.manifest, part)
        assert far_side.sha256_of(p["key"]) == p["sha256"] == big_bundle.side.sha256_of(p["key"])
    assert far_side.uploads() == []

    # A working `in` on the far side, with read-only credentials.
    dest = tmp_path / "dest"
    dest.mkdir()
    got_run = run_asset("in", {"source": far_side.get_source(), "version": {"version": "1.0.0"}}, dest)
    recorded(got_run.stdout, got_run.stderr)
    assert parse_stdout(got_run)["version"] == {"version": "1.0.0"}
    # Its get record: on stderr always; the read-only identity cannot store it, a warning says so.
    (get_line,) = [ln for ln in got_run.stderr.splitlines() if ln.startswith("record: {")]
    get_record = json.loads(get_line.removeprefix("record: "))
    assert get_record["event"] == "get" and get_record["signer"] == gpg_keys.signer.fingerprint
    assert get_record["details"]["files"] >= 2 and sorted(p["name"] for p in get_record["parts"]) == ["big", "small"]
    assert "warning: the get record was not stored" in got_run.stderr
    h = hashlib.sha256()
    with open(dest / "big" / "data.bin", "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    assert h.hexdigest() == big_bundle.data_sha256

    # The records of the round trip: the export in the near store and on the medium, the import in the far one.
    near_records = cli("records", "--config", big_bundle.side.reader_config(), tmpdir=tmp_path / "tmp").stdout
    medium_records = cli(
        "records", "--config", far_side.reader_config(), "--from-dir", medium, tmpdir=tmp_path / "tmp"
    ).stdout
    far_records = cli("records", "--config", far_side.reader_config(), "--json", tmpdir=tmp_path / "tmp").stdout
    signer = gpg_keys.signer.fingerprint
    assert re.search(rf"export\s+1\.0\.0\s+signer {signer}", near_records), near_records
    assert re.search(rf"export\s+1\.0\.0\s+signer {signer}", medium_records), medium_records
    (imported,) = [json.loads(line) for line in far_records.splitlines()]
    assert imported["event"] == "import" and imported["signer"] == signer and imported["signature"] == "verified"
    assert {p["payload"]["sha256"] for p in imported["parts"]} == {
        payload(big_bundle.manifest, n)["sha256"] for n in ("big", "small")
    }
    assert imported["details"]["pieces_uploaded"] == 6 and imported["by"]["host"]

    # An operator's unpack with an identity that may write leaves a get record in the far store.
    unpacker = far_side.config(
        "unpack",
        trusted_public_keys=[gpg_keys.signer.public_armored],
        decryption_private_key=gpg_keys.recipient.secret_armored,
    )
    cli("unpack", "--config", unpacker, "--part", "small", tmp_path / "op", tmpdir=tmp_path / "tmp")
    far_after = cli("records", "--config", far_side.reader_config(), "--json", tmpdir=tmp_path / "tmp").stdout
    events = [json.loads(line) for line in far_after.splitlines()]
    assert [e["event"] for e in events] == ["import", "get"]
    assert [p["name"] for p in events[1]["parts"]] == ["small"] and events[1]["signature"] == "verified"


def test_an_export_killed_half_way_resumes_without_rewriting_finished_pieces(
    big_bundle: Bundle, tmp_path: Path
) -> None:
    medium = tmp_path / "medium"
    big = payload(big_bundle.manifest, "big")
    index = medium / (big["key"] + ".index.json")
    config = big_bundle.side.reader_config()

    def two_pieces_done() -> bool:
        try:
            return len(json.loads(index.read_bytes())["pieces"]) >= 2
        except (OSError, ValueError):
            return False

    start_and_kill_when(
        ["export", "--config", config, "--to", medium, "--piece-size", "64MiB"], tmp_path, two_pieces_done
    )
    listed = [p["name"] for p in json.loads(index.read_bytes())["pieces"]]
    assert 2 <= len(listed) < 5
    assert not (medium / "demo" / "1.0.0" / "manifest.json.asc").exists()  # the commit object comes last
    folder = pieces_of(medium, big["key"])
    before = {n: ((folder / n).stat().st_ino, (folder / n).stat().st_mtime_ns) for n in listed}

    rerun = cli("export", "--config", config, "--to", medium, "--piece-size", "64MiB", tmpdir=tmp_path)
    after = {n: ((folder / n).stat().st_ino, (folder / n).stat().st_mtime_ns) for n in listed}
    assert after == before, "a finished piece was written again"
    assert f"{5 - len(listed) + 1} piece(s) written, {len(listed)} kept" in rerun.stdout, rerun.stdout
    assert not [p for p in file_sizes(medium) if os.path.basename(p).startswith(".tmp-")]
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (medium / "demo" / "1.0.0" / "manifest.json.asc").exists()


def test_an_import_killed_half_way_resumes_without_reuploading_finished_pieces(
    big_bundle: Bundle, big_medium: Exported, far: SeaweedServer, gpg_keys: GpgKeys, tmp_path: Path
) -> None:
    far_side = Side(far, new_bucket(far), gpg_keys, tmp_path)
    config = far_side.reader_config()
    client = far_side.client()

    big = payload(big_bundle.manifest, "big")
    sizes = {n: min(PIECE, big["size"] - (n - 1) * PIECE) for n in range(1, 6)}

    def parts_uploaded() -> int:
        """Whole parts of the big payload's upload (a part cut off by the kill would not count)."""
        total = 0
        for up in client.list_multipart_uploads(Bucket=far_side.bucket).get("Uploads", []):
            parts = client.list_parts(Bucket=far_side.bucket, Key=up["Key"], UploadId=up["UploadId"]).get("Parts", [])
            total += len([p for p in parts if up["Key"] == big["key"] and sizes.get(p["PartNumber"]) == p["Size"]])
        return total

    start_and_kill_when(
        ["import", "--config", config, "--from", big_medium.medium], tmp_path, lambda: parts_uploaded() >= 2
    )
    done = parts_uploaded()  # what the killed run left, counted after the kill
    assert 2 <= done < 5
    assert not [k for k in far_side.keys_under() if k.endswith("manifest.json.asc")]
    assert big["key"] not in far_side.keys_under()  # not completed: nothing under the payload's name

    rerun = cli("import", "--config", config, "--from", big_medium.medium, tmpdir=tmp_path)
    assert f"resuming an interrupted upload ({done} of 5 part(s) already there)" in rerun.stderr, rerun.stderr
    assert f"{5 - done} piece(s) uploaded, {done} resumed from an interrupted upload" in rerun.stderr, rerun.stderr
    assert far_side.sha256_of(big["key"]) == big["sha256"]
    assert far_side.uploads() == []
    assert "demo/1.0.0/manifest.json.asc" in far_side.keys_under()


def test_a_corrupted_piece_is_named_and_nothing_is_committed(
    near_server: SeaweedServer, far: SeaweedServer, gpg_keys: GpgKeys, tmp_path: Path
) -> None:
    near = quick_bundle(near_server, gpg_keys, tmp_path, {"1.0.0": "one"})
    medium = tmp_path / "medium"
    cli("export", "--config", near.reader_config(), "--to", medium, "--piece-size", "5MiB", tmpdir=tmp_path)
    big = payload(manifest_of(near, "1.0.0"), "big")
    folder = pieces_of(medium, big["key"])
    far_side = Side(far, new_bucket(far), gpg_keys, tmp_path)

    piece = folder / "00002"
    data = bytearray(piece.read_bytes())
    data[12345] ^= 0x40
    piece.write_bytes(bytes(data))
    error = one_error(cli("import", "--config", far_side.reader_config(), "--from", medium, tmpdir=tmp_path, ok=False))
    assert "piece 00002" in error and "nothing was committed" in error, error
    assert far_side.keys_under("") == [] and far_side.uploads() == []

    # Piece and index altered alike: the pieces agree with the index, not with the signed manifest.
    forged = random.Random(7).randbytes(len(data))
    piece.write_bytes(forged)
    index_file = medium / (big["key"] + ".index.json")
    index = json.loads(index_file.read_text())
    index["pieces"][1]["sha256"] = hashlib.sha256(forged).hexdigest()
    index_file.write_text(json.dumps(index))
    error = one_error(cli("import", "--config", far_side.reader_config(), "--from", medium, tmpdir=tmp_path, ok=False))
    assert "do not match the signed manifest" in error, error
    assert far_side.keys_under("") == [] and far_side.uploads() == []


def test_import_checks_the_signature_before_uploading_and_a_refused_record_is_only_a_warning(
    near_server: SeaweedServer, far: SeaweedServer, gpg_keys: GpgKeys, tmp_path: Path
) -> None:
    near = quick_bundle(near_server, gpg_keys, tmp_path, {"1.0.0": "one"})
    medium = tmp_path / "medium"
    # A read-only identity may export; its record cannot be stored in the bucket: a warning, not a failure.
    run = cli("export", "--config", near.reader_config("ro"), "--to", medium, "--piece-size", "5MiB", tmpdir=tmp_path)
    assert re.search(r"^warning: the export record was not stored in s3://\S+ .*may not write", run.stderr, re.M)
    (summary,) = [ln for ln in run.stderr.splitlines() if ln.startswith("record: export of demo")]
    assert f"stored at {medium}/demo/_records/" in summary  # the medium took it; the JSON stays there
    assert not [k for k in near.keys_under() if "/_records/" in k]
    assert len(list((medium / "demo" / "_records").iterdir())) == 1

    far_side = Side(far, new_bucket(far), gpg_keys, tmp_path)
    untrusting = far_side.reader_config(signer="untrusted_signer")
    error = one_error(cli("import", "--config", untrusting, "--from", medium, tmpdir=tmp_path, ok=False))
    assert "sign" in error.lower(), error
    assert far_side.keys_under("") == [] and far_side.uploads() == []


def test_since_carries_only_the_changed_part(
    near_server: SeaweedServer, far: SeaweedServer, gpg_keys: GpgKeys, tmp_path: Path
) -> None:
    near = quick_bundle(near_server, gpg_keys, tmp_path, {"1.0.0": "one", "2.0.0": "two"})
    v1, v2 = manifest_of(near, "1.0.0"), manifest_of(near, "2.0.0")
    assert payload(v1, "big") == payload(v2, "big")  # the unchanged part's payload is shared
    config = near.reader_config()
    full, delta = tmp_path / "full", tmp_path / "delta"
    cli("export", "--config", config, "--version", "1.0.0", "--to", full, "--piece-size", "5MiB", tmpdir=tmp_path)
    run = cli("export", "--config", config, "--version", "2.0.0", "--since", "1.0.0", "--to", delta,
              "--piece-size", "5MiB", tmpdir=tmp_path)  # fmt: skip
    assert "1 left out (--since 1.0.0)" in run.stdout
    blobs = sorted(os.listdir(delta / "demo" / "_blobs"))
    small = payload(v2, "small")["key"].rpartition("/")[2]
    assert blobs == [f"{small}.index.json", f"{small}.pieces"]

    # A far side without 1.0.0 cannot take the delta: refused before anything is uploaded.
    empty = Side(far, new_bucket(far), gpg_keys, tmp_path)
    error = one_error(cli("import", "--config", empty.reader_config(), "--from", delta, tmpdir=tmp_path, ok=False))
    assert "part big is neither on" in error and "--since" in error, error
    assert empty.keys_under("") == []

    far_side = Side(far, new_bucket(far), gpg_keys, tmp_path)
    cli("import", "--config", far_side.reader_config(), "--from", full, tmpdir=tmp_path)
    run = cli("import", "--config", far_side.reader_config(), "--from", delta, tmpdir=tmp_path)
    assert "1 payload(s) uploaded (1 piece(s) sent, 0 resumed), 1 already there" in run.stdout, run.stdout
    dest = tmp_path / "dest"
    dest.mkdir()
    parse_stdout(run_asset("in", {"source": far_side.get_source(), "version": {"version": "2.0.0"}}, dest))
    assert (dest / "small" / "notes.txt").read_text() == "two"
    assert (dest / "big" / "data.bin").stat().st_size == SMALL_BIG


def test_mirror_copies_three_versions_and_skips_what_is_present(
    near_server: SeaweedServer, far: SeaweedServer, gpg_keys: GpgKeys, tmp_path: Path
) -> None:
    near = quick_bundle(near_server, gpg_keys, tmp_path, {"1.0.0": "one", "1.1.0": "two", "1.2.0": "three"})
    far_side = Side(far, new_bucket(far), gpg_keys, tmp_path)
    src = near.reader_config("ro")  # the link only reads the near side
    dst = far_side.reader_config()

    run = cli("mirror", "--from-config", src, "--to-config", dst, "--keep", "1", tmpdir=tmp_path)
    assert "1 version(s) copied (1.2.0)" in run.stdout and "2 payload(s) copied" in run.stdout, run.stdout
    run = cli("mirror", "--from-config", src, "--to-config", dst, tmpdir=tmp_path)
    assert "2 version(s) copied (1.0.0, 1.1.0), 1 already there" in run.stdout, run.stdout
    assert "2 payload(s) copied, 2 already there" in run.stdout, run.stdout  # the shared big payload is skipped
    assert "version 1.2.0 is already in" in run.stderr
    run = cli("mirror", "--from-config", src, "--to-config", dst, tmpdir=tmp_path)
    assert "0 version(s) copied (none), 3 already there; 0 payload(s) copied" in run.stdout, run.stdout

    for v in ("1.0.0", "1.1.0", "1.2.0"):
        m = manifest_of(near, v)
        for part in ("big", "small"):
            assert far_side.sha256_of(payload(m, part)["key"]) == payload(m, part)["sha256"]
    assert far_side.uploads() == []
    dest = tmp_path / "dest"
    dest.mkdir()
    parse_stdout(run_asset("in", {"source": far_side.get_source(), "version": {"version": "1.1.0"}}, dest))
    assert (dest / "small" / "notes.txt").read_text() == "two"
    records = cli("records", "--config", dst, tmpdir=tmp_path).stdout.splitlines()
    assert [re.split(r"\s+", r)[1:3] for r in records] == [
        ["mirror", "1.2.0"],
        ["mirror", "1.0.0"],
        ["mirror", "1.1.0"],
    ]

    # A version signed by a key the far side does not trust is reported and not written; the rest goes on.
    forger = near.config(
        "forger",
        recipient_public_keys=[gpg_keys.recipient.public_armored],
        signing_private_key=gpg_keys.untrusted_signer.secret_armored,
    )
    build = tmp_path / f"build-{near.bucket}"
    (build / "small" / "notes.txt").write_text("forged")
    pack(forger, build, "1.3.0", tmp_path / "tmp")
    run = cli("mirror", "--from-config", src, "--to-config", dst, tmpdir=tmp_path, ok=False)
    assert run.returncode == 1 and "FAILED 1.3.0:" in run.stdout, run.stdout + run.stderr
    assert "error: mirror: 1 of 4 version(s) failed" in run.stderr
    assert "demo/1.3.0/manifest.json.asc" not in far_side.keys_under()
    forged_small = payload(manifest_of(near, "1.3.0"), "small")["key"]
    assert forged_small not in far_side.keys_under()  # verification comes before any payload is copied


def test_import_also_takes_a_medium_written_by_pack_to_dir(
    near_server: SeaweedServer, far: SeaweedServer, gpg_keys: GpgKeys, tmp_path: Path
) -> None:
    near = Side(near_server, new_bucket(near_server), gpg_keys, tmp_path)
    build = tmp_path / "build"
    random_file(build / "big" / "data.bin", SMALL_BIG, seed=5)
    random_file(build / "small" / "notes.txt", 100, seed=6)
    medium = tmp_path / "medium"
    cli("pack", "--config", near.put_config(), "--to-dir", medium, "--base", build, "--part", "big=big",
        "--part", "small=small", "--version", "1.0.0", tmpdir=tmp_path)  # fmt: skip
    far_side = Side(far, new_bucket(far), gpg_keys, tmp_path)
    run = cli("import", "--config", far_side.reader_config(), "--from", medium, tmpdir=tmp_path)
    assert "2 payload(s) uploaded (3 piece(s) sent, 0 resumed)" in run.stdout, run.stdout  # 8 MiB parts
    dest = tmp_path / "dest"
    dest.mkdir()
    parse_stdout(run_asset("in", {"source": far_side.get_source(), "version": {"version": "1.0.0"}}, dest))
    assert (dest / "big" / "data.bin").stat().st_size == SMALL_BIG
