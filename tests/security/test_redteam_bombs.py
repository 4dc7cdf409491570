"""Resource exhaustion through a payload, by whoever carries the bundle.

The recipient's public key is public: anyone can encrypt to it. A carrier who swaps a payload
cannot make its SHA-256 match the signed manifest, but that hash is only complete at the end of
the stream, while gpg and the tar reader see the carrier's bytes as they arrive. What they read
before the hash is complete must stay bounded in memory and time: a small compressed payload
must not become gigabytes in the get's memory, and the step must end with one clear line.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.concourse import run_asset
from tests.support.forge import ForgedPart, Forger, file_entry, file_member, node_member, tar_of
from tests.support.gpgkeys import clearsign, gpg_binary, import_keys, temporary_gnupghome
from tests.support.paths import ASSETS_DIR
from tests.support.sides import Sides, assert_clean_failure

pytestmark = pytest.mark.integration

GiB = 1 << 30
RSS_LIMIT_KIB = 512 * 1024  # a get holds a few chunks and queues, never the payload


def sealed_stream(out: Path, chunks: Any, recipient_public: str, fingerprint: str) -> None:
    """Encrypt (zlib, level 9) what ``chunks`` yields to the recipient, streaming: gigabytes of
    plaintext never sit in the test's memory."""
    with temporary_gnupghome() as home:
        import_keys(home, recipient_public)
        cmd = [gpg_binary(), "--homedir", str(home), "--batch", "--no-tty", "--yes", "--trust-model", "always"]
        cmd += ["--compress-algo", "zlib", "-z", "9", "--recipient", fingerprint, "--output", str(out), "--encrypt"]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        for chunk in chunks:
            proc.stdin.write(chunk)
        proc.stdin.close()
        assert proc.wait(timeout=300) == 0


def zeros(n: int, fill: bytes = b"\0") -> Any:
    block = fill * (1 << 20)
    while n > 0:
        yield block[: min(n, len(block))]
        n -= len(block)


def commit_in_lines(forger: Forger, version: str, manifest: dict[str, Any]) -> None:
    """Commit with one JSON element a line, as the product does: GnuPG clear-signs lines of at most
    19,995 characters."""
    body = json.dumps(manifest, indent=0, sort_keys=True).encode()
    signed = clearsign(forger.signer, body)
    forger.client.put_object(Bucket=forger.bucket, Key=f"{forger.name}/{version}/manifest.json.asc", Body=signed)


def carry_in_place(forger: Forger, part: ForgedPart, sealed: Path) -> None:
    """Commit a signed bundle whose payload is as large as ``sealed``, then put ``sealed`` in its
    place: the carrier's swap of a same-size object (the size check at the GET's start passes)."""
    data = sealed.read_bytes()
    manifest = forger.manifest("1", [part])
    original = hashlib.sha256(b"what the signer uploaded").hexdigest()
    key = f"_blobs/{original[:32]}"  # relative to the bundle's folder, as a writer names it
    manifest["parts"][0]["payload"] = {"key": key, "size": len(data), "sha256": original}
    forger.client.put_object(Bucket=forger.bucket, Key=f"{forger.name}/{key}", Body=data)
    forger.commit("1", manifest)


def measured_in(sides: Sides, tmp_path: Path, dest: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run assets/in through a stand-in that reports the peak RSS (KiB) of the get and its children."""
    rss = tmp_path / "maxrss"
    stand_in = tmp_path / "bin" / "in"
    stand_in.parent.mkdir()
    stand_in.write_text(
        f"#!{sys.executable}\n"
        "import resource, subprocess, sys\n"
        f"rc = subprocess.run([{str(ASSETS_DIR / 'in')!r}, *sys.argv[1:]]).returncode\n"
        f"open({str(rss)!r}, 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
        "sys.exit(rc)\n"
    )
    stand_in.chmod(0o755)
    dest.mkdir(parents=True)
    proc = run_asset(str(stand_in), {"source": sides.get_source, "version": {"version": "1"}}, dest)
    return proc, int(rss.read_text())


def test_a_gnu_long_name_of_a_gigabyte_is_not_read_into_memory(sides: Sides, forger: Forger, tmp_path: Path) -> None:
    """A tar header announcing a 1 GiB long name (a few MB of zlib): tarfile would read it whole."""
    longlink = tarfile.TarInfo("././@LongLink")
    longlink.type = tarfile.GNUTYPE_LONGNAME
    longlink.size = GiB
    head = longlink.tobuf(tarfile.GNU_FORMAT)
    tail = tar_of([file_member("x", b"x")])
    sealed = tmp_path / "bomb.gpg"
    sealed_stream(
        sealed,
        (c for part in ([head], zeros(GiB, b"a"), [tail]) for c in part),
        sides.keys.recipient.public_armored,
        sides.keys.recipient.fingerprint,
    )
    carry_in_place(forger, ForgedPart("p", tail, [file_entry("x", b"x")]), sealed)
    dest = tmp_path / "dest"
    proc, peak = measured_in(sides, tmp_path, dest)
    print(f"peak RSS {peak // 1024} MiB; {proc.stderr.strip().splitlines()[-1]}")
    assert_clean_failure(proc, "part p", dest)
    assert proc.returncode == 1, proc.stderr
    assert peak < RSS_LIMIT_KIB, f"peak RSS {peak} KiB"


def test_a_gigabyte_after_the_end_of_the_archive_is_not_read_into_memory(
    sides: Sides, forger: Forger, tmp_path: Path
) -> None:
    """The carrier knows the plaintext (an empty folder, a public release) and appends a zlib bomb
    after the tar's end: the archive checks pass, and what follows must not be gathered."""
    members = [node_member("d", tarfile.DIRTYPE)]
    files = [{"path": "d", "type": "dir", "mode": "0755", "mtime": 0}]
    sealed = tmp_path / "bomb.gpg"
    sealed_stream(
        sealed,
        (c for part in ([tar_of(members)], zeros(GiB)) for c in part),
        sides.keys.recipient.public_armored,
        sides.keys.recipient.fingerprint,
    )
    carry_in_place(forger, ForgedPart("p", tar_of(members), files), sealed)
    dest = tmp_path / "dest"
    proc, peak = measured_in(sides, tmp_path, dest)
    print(f"peak RSS {peak // 1024} MiB; {proc.stderr.strip().splitlines()[-1]}")
    assert_clean_failure(proc, "part p", dest)
    assert proc.returncode == 1, proc.stderr
    assert peak < RSS_LIMIT_KIB, f"peak RSS {peak} KiB"


def deep_tree(depth: int, data: bytes, announced: bytes) -> ForgedPart:
    paths = ["/".join(["d"] * i) for i in range(1, depth + 1)]
    members = [node_member(p, tarfile.DIRTYPE) for p in paths] + [file_member(paths[-1] + "/x", data)]
    files: list[dict[str, Any]] = [{"path": p, "type": "dir", "mode": "0755", "mtime": 0} for p in paths]
    files.append(file_entry(paths[-1] + "/x", announced))
    return ForgedPart("p", tar_of(members), files)


@pytest.fixture
def deep_dest(tmp_path: Path) -> Iterator[Path]:
    """Removed with rm: Python's recursive rmtree (pytest's own clean-up) stops at ~1,000 levels."""
    yield tmp_path / "dest"
    subprocess.run(["rm", "-rf", str(tmp_path / "dest")], check=True)


def test_a_signed_deep_tree_extracts(sides: Sides, forger: Forger, deep_dest: Path) -> None:
    """1,200 nested folders (within the path limit): no recursion limit, no crash, all in place."""
    commit_in_lines(forger, "1", forger.manifest("1", [deep_tree(1200, b"deep", b"deep")]))
    sides.get("1", deep_dest)
    assert (deep_dest / "p" / "/".join(["d"] * 1200) / "x").read_bytes() == b"deep"


def test_a_deep_tree_that_fails_at_its_last_file_leaves_nothing(sides: Sides, forger: Forger, deep_dest: Path) -> None:
    """The carrier knows a deep part's folders and fails the last file: the staging folder, 1,200
    levels deep by then, is removed and the failure is one line (exit 1), not a RecursionError."""
    commit_in_lines(forger, "1", forger.manifest("1", [deep_tree(1200, b"evil", b"good")]))
    proc = sides.in_("1", deep_dest)
    assert_clean_failure(proc, "differs from the signed manifest", deep_dest)
    assert proc.returncode == 1


def test_a_manifest_of_half_a_million_entries_is_refused_within_bounds(
    sides: Sides, forger: Forger, tmp_path: Path
) -> None:
    """Half a million tiny entries in a signed manifest (about half the commit-object limit), with a payload
    that does not match: refused with one line, within the time and memory of the step."""
    n = 500_000
    files = [{"path": f"f{i}", "type": "dir", "mode": "0755", "mtime": 0} for i in range(n)]
    commit_in_lines(forger, "1", forger.manifest("1", [ForgedPart("p", tar_of([file_member("x", b"x")]), files)]))
    dest = tmp_path / "dest"
    started = time.monotonic()
    proc, peak = measured_in(sides, tmp_path, dest)
    took = time.monotonic() - started
    print(f"{n} entries: peak RSS {peak // 1024} MiB, {took:.1f} s")
    assert_clean_failure(proc, "not in the signed manifest", dest)
    assert proc.returncode == 1
    assert peak < 3 * RSS_LIMIT_KIB, f"peak RSS {peak} KiB"
    assert took < 120
