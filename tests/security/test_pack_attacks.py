"""What `out` reads and packs when the build folder is hostile.

The build folder (``$1``) is filled by earlier steps and may hold anything: links to a key outside
it, links whose text looks harmless but that lead out through other links, names a get would
refuse, special files, nodes swapped while they are read. Each case uses real folders, links and
special files; a planted "secret" outside the build folder must never reach a tar stream.
"""

from __future__ import annotations

import glob
import io
import os
import signal
import socket
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from offline_bundle.bundle import pack
from offline_bundle.bundle.archive import TarStream, extract_part, hash_entries, plan_part, probe_of
from offline_bundle.bundle.pack import check_commit_fits, manifest_size_bound, resolve_version
from offline_bundle.core import confined
from offline_bundle.core.config import BuildInfo, OutParams, PartSpec, parse_source
from offline_bundle.core.manifest import MAX_PATH_BYTES, PROBE_BYTES, Encryption, Manifest, Part, Payload
from offline_bundle.errors import ConfigError
from tests.support.sides import Sides, assert_clean_failure

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- not for the bundle"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the build folder holding a secret, as another job's workspace or /root/.ssh."""
    d = tmp_path / "outside"
    (d / "sub").mkdir(parents=True)
    (d / "id_rsa").write_bytes(SECRET)
    (d / "sub" / "secret.key").write_bytes(SECRET)
    return d


@pytest.fixture
def build(tmp_path: Path) -> Path:
    d = tmp_path / "build"
    d.mkdir()
    return d


def tar_bytes(build: Path, pattern: str) -> bytes:
    plan = plan_part(build, "p", pattern, "p/")
    return TarStream(plan.entries).read()


def paths(build: Path, pattern: str) -> list[str]:
    return [e.path for e in plan_part(build, "p", pattern, "p/").entries]


@pytest.mark.parametrize(
    "pattern",
    ["*", "**", "**/*.tgz", "a/**", "a/**/", "a/**/c", "*/", "a/*/", ".h/**/.*", "a/b", "a/b/", "x", "*/*/*",
     "**/c/*", "a/**/*.tgz", "[ab]/*", "a/?/c"],
)  # fmt: skip
def test_without_links_the_confined_glob_matches_what_glob_matches(build: Path, pattern: str) -> None:
    for folder in ("a/b/c", ".h/x", "d"):
        (build / folder).mkdir(parents=True)
    for file in ("a/f.tgz", "a/b/g.tgz", "a/b/c/h.txt", ".h/x/.k", "d/e", "top.tgz"):
        (build / file).write_text(file)
    expected = glob.glob(pattern, root_dir=build, recursive=True, include_hidden=True)
    with confined.BuildDir(build) as root:
        assert [m for m, _ in root.glob(pattern)] == sorted({m.rstrip("/") for m in expected} - {""})


# ------------------------------------------------------------------------------- links that escape


def deep_escape(root: Path) -> None:
    """Each text stays inside; followed through ``up``, ``escape`` reaches /etc/passwd."""
    deep = root / "a" / "d1" / "d2" / "d3" / "d4" / "d5" / "d6" / "d7" / "d8"
    deep.mkdir(parents=True)
    os.symlink("../../../../../../../..", deep / "up")
    os.symlink("d1/d2/d3/d4/d5/d6/d7/d8/up/" + "../" * 10 + "etc/passwd", root / "a" / "escape")


def test_a_link_whose_text_stays_inside_but_that_leads_out_through_another_link(build: Path) -> None:
    deep_escape(build / "part")
    with pytest.raises(ConfigError, match=r"'a/escape' .* leads outside the part"):
        plan_part(build, "p", "part", "p/")


@pytest.mark.parametrize(
    ("links", "words"),
    [
        ({"a": "b", "b": "a"}, "round a loop"),
        ({"self": "self"}, "round a loop"),
        ({"abs": "/etc/passwd"}, "points outside the part"),
        ({"up": ".."}, "points outside the part"),
        # each text stays inside; followed, '..' climbs from where the link really leads
        ({"sub/up": "..", "x": "sub/up/../etc"}, "'x' .* leads outside the part"),
        # through a link to a folder that is itself a link
        ({"sub/l1": "..", "sub/l2": "l1", "x": "sub/l2/.."}, "'x' .* leads outside the part"),
        ({"dot": ".", "x": "dot/dot/dot/.."}, "'x' .* leads outside the part"),
    ],
)
def test_links_that_leave_the_part_or_loop_are_refused(build: Path, links: dict[str, str], words: str) -> None:
    part = build / "part"
    (part / "sub").mkdir(parents=True)
    for name, target in links.items():
        os.symlink(target, part / name)
    with pytest.raises(ConfigError, match=words):
        plan_part(build, "p", "part", "p/")


def test_links_that_stay_inside_are_packed_as_links_and_come_back(build: Path, tmp_path: Path) -> None:
    part = build / "part"
    (part / "real" / "inner").mkdir(parents=True)
    (part / "real" / "inner" / "f").write_bytes(b"data")
    os.symlink("real", part / "l1")
    os.symlink("l1", part / "l2")  # a link to a link
    os.symlink("l2/inner/../inner/f", part / "chain")  # through the chain, '..' judged where it leads
    os.symlink(".", part / "here")  # the part's own root
    os.symlink("../../here/l2/inner", part / "real" / "inner" / "back")
    plan = plan_part(build, "p", "part", "p/")
    kinds = {e.path: (e.type, e.target) for e in plan.entries}
    assert kinds["chain"] == ("symlink", "l2/inner/../inner/f")
    assert kinds["here"] == ("symlink", ".")
    data = TarStream(plan.entries).read()
    dest = tmp_path / "dest"
    extract_part(io.BytesIO(data), tuple(e.to_file_entry() for e in plan.entries), str(dest), part="p")
    assert (dest / "chain").read_bytes() == b"data"
    assert os.path.realpath(dest / "real" / "inner" / "back") == str(dest / "real" / "inner")


def test_a_link_to_something_the_part_does_not_hold_is_refused(build: Path) -> None:
    (build / "dist").mkdir()
    (build / "dist" / "app-1.2.tgz").write_bytes(b"app")
    os.symlink("app-1.2.tgz", build / "dist" / "latest.tgz")
    with pytest.raises(ConfigError, match="which the part does not hold; pack its target too"):
        plan_part(build, "p", "dist/latest.tgz", "p/")
    assert paths(build, "dist/*.tgz") == ["app-1.2.tgz", "latest.tgz"]


# --------------------------------------------------------------------- nothing outside $1 is read


def test_a_glob_match_that_links_outside_is_refused_not_read(build: Path, outside: Path) -> None:
    (build / "dist").mkdir()
    (build / "dist" / "app.tgz").write_bytes(b"app")
    os.symlink(outside / "id_rsa", build / "dist" / "id_rsa")
    with pytest.raises(ConfigError, match="'id_rsa' -> .* points outside the part"):
        plan_part(build, "p", "dist/*", "p/")
    os.unlink(build / "dist" / "id_rsa")
    os.symlink("../../outside/id_rsa", build / "dist" / "id_rsa")  # relative, out of $1
    with pytest.raises(ConfigError, match="points outside the part"):
        plan_part(build, "p", "dist/*", "p/")


def test_a_part_path_that_is_a_link_to_a_folder_outside_is_refused(build: Path, outside: Path) -> None:
    os.symlink(outside, build / "dist")
    with pytest.raises(ConfigError, match="'dist' -> .* points outside the part"):
        plan_part(build, "p", "dist", "p/")
    # the link named on the way is never entered
    for pattern in ("dist/id_rsa", "dist/*", "dist/sub/secret.key", "dist/**"):
        with pytest.raises(ConfigError, match="symlink where the path needs a folder"):
            plan_part(build, "p", pattern, "p/")


def test_double_star_does_not_recurse_through_a_linked_folder(build: Path, outside: Path) -> None:
    (build / "keys").mkdir()
    (build / "keys" / "own.key").write_bytes(b"own")
    os.symlink(outside / "sub", build / "keys" / "elsewhere")
    os.symlink(outside, build / "top")  # a wildcard on the way skips it, never enters it
    assert paths(build, "**/*.key") == ["own.key"]
    assert paths(build, "*/*.key") == ["own.key"]
    assert SECRET not in tar_bytes(build, "**/*.key")


def test_a_folder_on_the_way_that_is_a_link_is_refused(build: Path, outside: Path) -> None:
    (build / "real").mkdir()
    os.symlink(outside, build / "real" / "via")
    with pytest.raises(ConfigError, match="'real/via' is a symlink where the path needs a folder"):
        plan_part(build, "p", "real/via/id_rsa", "p/")


def test_a_file_swapped_for_a_link_after_planning_is_not_followed(build: Path, outside: Path) -> None:
    (build / "dist").mkdir()
    (build / "dist" / "a.bin").write_bytes(b"x" * len(SECRET))
    plan = plan_part(build, "p", "dist", "p/")
    os.unlink(build / "dist" / "a.bin")
    os.symlink(outside / "id_rsa", build / "dist" / "a.bin")
    with pytest.raises(ConfigError, match="became a symlink after it was listed"):
        TarStream(plan.entries).read()
    with pytest.raises(ConfigError, match="became a symlink"):
        hash_entries(plan.entries)
    with pytest.raises(ConfigError, match="became a symlink"):
        probe_of(plan.entries[0])


def test_a_folder_swapped_for_a_link_after_planning_is_not_followed(build: Path, outside: Path) -> None:
    (build / "dist" / "sub").mkdir(parents=True)
    (build / "dist" / "sub" / "id_rsa").write_bytes(b"y" * len(SECRET))
    plan = plan_part(build, "p", "dist", "p/")
    os.rename(build / "dist" / "sub", build / "moved")
    os.symlink(outside, build / "dist" / "sub")
    with pytest.raises(ConfigError, match="'dist/sub' is a symlink on the way"):
        TarStream(plan.entries).read()


def test_a_folder_swapped_for_a_link_during_the_walk_is_not_entered(
    build: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (build / "dist" / "sub").mkdir(parents=True)
    (build / "dist" / "sub" / "f").write_bytes(b"f")
    listed = confined.BuildDir.scandir

    def swap_after_listing(self: confined.BuildDir, rel: str, what: str = "") -> list:
        children = listed(self, rel, what)
        if rel == "dist":  # the walk has seen 'sub' as a folder: now it becomes a link out
            os.rename(build / "dist" / "sub", build / "moved")
            os.symlink(outside, build / "dist" / "sub")
        return children

    monkeypatch.setattr(confined.BuildDir, "scandir", swap_after_listing)
    with pytest.raises(ConfigError, match="'dist/sub' is a symlink on the way"):
        plan_part(build, "p", "dist", "p/")


def test_a_file_replaced_by_another_after_planning_is_refused(build: Path) -> None:
    (build / "dist").mkdir()
    (build / "dist" / "a").write_bytes(b"1234")
    plan = plan_part(build, "p", "dist", "p/")
    (build / "dist" / "b").write_bytes(b"5678")
    os.replace(build / "dist" / "b", build / "dist" / "a")
    with pytest.raises(ConfigError, match="replaced by another file while it was packed"):
        TarStream(plan.entries).read()


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail instead of hanging if an open blocks (a FIFO opened for reading waits for a writer)."""

    def fail(*_: object) -> None:
        raise AssertionError("an open blocked: a FIFO was opened as a file")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(10)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_file_swapped_for_a_fifo_after_planning_neither_hangs_nor_is_read(build: Path, alarm: None) -> None:
    (build / "dist").mkdir()
    (build / "dist" / "a").write_bytes(b"1234")
    plan = plan_part(build, "p", "dist", "p/")
    os.unlink(build / "dist" / "a")
    os.mkfifo(build / "dist" / "a")
    with pytest.raises(ConfigError, match="no longer a regular file"):
        TarStream(plan.entries).read()


# ----------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("back\\slash", "backslash"),
        ("line\nbreak", "control character"),
        ("tab\there", "control character"),
        ("esc\x1b[31mred", "control character"),
        ("c1\x9bcsi", "control character"),
    ],
)
def test_names_a_get_would_refuse_are_refused_when_planning(build: Path, name: str, words: str) -> None:
    (build / "dist").mkdir()
    (build / "dist" / name).write_bytes(b"x")
    with pytest.raises(ConfigError, match=words) as e:
        plan_part(build, "p", "dist", "p/")
    assert "a get would refuse it" in str(e.value)
    assert "\n" not in str(e.value)


def test_non_utf8_names_and_link_targets_are_refused(build: Path) -> None:
    (build / "dist").mkdir()
    os.symlink(b"bad\xff", os.path.join(os.fsencode(build / "dist"), b"link"))
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        plan_part(build, "p", "dist", "p/")


def test_a_path_too_long_for_the_far_side_is_refused(build: Path) -> None:
    d = build / "dist"
    d.mkdir()
    rel = "/".join(["n" * 200] * (MAX_PATH_BYTES // 201 + 1))
    os.makedirs(d / rel)
    with pytest.raises(ConfigError, match=f"more than {MAX_PATH_BYTES}"):
        plan_part(build, "p", "dist", "p/")


def test_a_part_deeper_than_path_max_in_the_build_folder_is_packed(build: Path, tmp_path: Path) -> None:
    """Paths are opened one folder at a time, so depth in the build folder is no limit."""
    fd = os.open(build, os.O_RDONLY)
    names = ["d" * 250] * 20  # 5,020 characters below the build folder, over Linux's PATH_MAX
    try:
        for name in names:
            os.mkdir(name, dir_fd=fd)
            new = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
        os.mkdir("leaf", dir_fd=fd)
        with open(os.open("leaf/f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(b"deep")
    finally:
        os.close(fd)
    plan = plan_part(build, "p", "/".join([*names, "leaf"]), "p/")
    assert [e.path for e in plan.entries] == ["f"]
    data = TarStream(plan.entries).read()
    extract_part(io.BytesIO(data), (plan.entries[0].to_file_entry(),), str(tmp_path / "dest"), part="p")
    assert (tmp_path / "dest" / "f").read_bytes() == b"deep"


# ------------------------------------------------------------------------------------ node types


def test_fifos_sockets_and_devices_are_refused(build: Path, alarm: None, monkeypatch: pytest.MonkeyPatch) -> None:
    (build / "dist").mkdir()
    os.mkfifo(build / "dist" / "fifo")
    with pytest.raises(ConfigError, match="neither a file, a folder nor a symlink"):
        plan_part(build, "p", "dist", "p/")
    os.unlink(build / "dist" / "fifo")
    monkeypatch.chdir(build / "dist")  # a socket's path is limited to 108 bytes
    with socket.socket(socket.AF_UNIX) as s:
        s.bind("sock")
        with pytest.raises(ConfigError, match="'sock' is neither"):
            plan_part(build, "p", "dist", "p/")
    os.unlink(build / "dist" / "sock")
    try:
        os.mknod(build / "dist" / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    with pytest.raises(ConfigError, match="'null' is neither"):
        plan_part(build, "p", "dist", "p/")


def test_hard_links_become_two_copies(build: Path, tmp_path: Path) -> None:
    (build / "dist").mkdir()
    (build / "dist" / "a").write_bytes(b"same bytes")
    os.link(build / "dist" / "a", build / "dist" / "b")
    plan = plan_part(build, "p", "dist", "p/")
    data = TarStream(plan.entries).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert [(m.name, m.type) for m in tf.getmembers()] == [("a", tarfile.REGTYPE), ("b", tarfile.REGTYPE)]
    dest = tmp_path / "dest"
    extract_part(io.BytesIO(data), tuple(e.to_file_entry() for e in plan.entries), str(dest), part="p")
    assert (dest / "a").read_bytes() == (dest / "b").read_bytes() == b"same bytes"
    assert os.stat(dest / "a").st_ino != os.stat(dest / "b").st_ino


# ------------------------------------------------------------------------------------ version_file

TOKEN = "ghp_s3cr3tT0kenValue/with/slashes"


@pytest.mark.parametrize("where", ["../x/token", "link-out", "link-in", "bad-content", "dir"])
def test_a_version_file_outside_or_not_a_version_is_refused_without_its_content(
    build: Path, tmp_path: Path, where: str
) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "token").write_text(TOKEN)
    (build / "token").write_text(TOKEN)
    (build / "bad-content").write_text(TOKEN)
    (build / "dir").mkdir()
    os.symlink(tmp_path / "x" / "token", build / "link-out")
    os.symlink("token", build / "link-in")
    params = OutParams(parts=(PartSpec("p", "dist", "p/"),), version_file=where)
    with pytest.raises(ConfigError) as e:
        resolve_version(params, str(build))
    assert "ghp_" not in str(e.value) and "s3cr3t" not in str(e.value)
    assert where in str(e.value)


def test_a_nul_in_a_part_path_or_version_file_is_a_refusal_not_a_crash(build: Path) -> None:
    with pytest.raises(ConfigError, match="without '..'"):
        plan_part(build, "p", "dist/\x00x", "p/")
    params = OutParams(parts=(PartSpec("p", "dist", "p/"),), version_file="num\x00ber")
    with pytest.raises(ConfigError, match="without '..'"):
        resolve_version(params, str(build))


def test_a_version_file_inside_is_read(build: Path) -> None:
    (build / "version").mkdir()
    (build / "version" / "number").write_text("1.2.3\n")
    params = OutParams(parts=(PartSpec("p", "dist", "p/"),), version_file="version/number")
    assert resolve_version(params, str(build)) == "1.2.3"


# --------------------------------------------------------------------------- what a get can read


def test_the_manifest_estimate_bounds_the_real_manifest_and_too_large_is_refused(
    build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The estimate made before uploading is never below the manifest a put commits."""
    (build / "dist" / "sub").mkdir(parents=True)
    for i in range(40):
        (build / "dist" / "sub" / f"{'é' * 100}{i:03d}").write_bytes(b"x" * (PROBE_BYTES + i) if i % 2 else b"s")
    os.symlink("sub/" + "é" * 100 + "000", build / "dist" / "link")
    plan = plan_part(build, "p", "dist", "p/")
    source = parse_source({"bucket": "bkt", "name": "demo", "allow_unencrypted": True})
    build_info = BuildInfo({"build_id": "4242", "build_team_name": "main"})
    bound, files = manifest_size_bound([plan], Encryption(), source, "1.0.0", build_info)
    TarStream(plan.entries).read()  # fills the hashes and probes
    real = Manifest(
        name="demo",
        version="1.0.0",
        created_at="2026-11-30T11:00:00Z",
        parts=(
            Part(
                "p",
                "p/",
                Payload("_blobs/" + "0" * 32, 123456, "0" * 64),  # what a put writes: relative, 128 bits
                Encryption(),
                tuple(e.to_file_entry() for e in plan.entries),
            ),
        ),
        created_by=build_info.values,
    )
    assert files == 42
    assert len(real.to_json_bytes()) <= bound < len(real.to_json_bytes()) + 200
    check_commit_fits([plan], Encryption(), source, "1.0.0", build_info)
    monkeypatch.setattr(pack, "COMMIT_MAX_BYTES", bound)  # the signature no longer fits
    with pytest.raises(ConfigError, match="lists 42 files and folders.*pack fewer files"):
        check_commit_fits([plan], Encryption(), source, "1.0.0", build_info)


# ------------------------------------------------------------ through assets/out, as Concourse runs it


def assert_nothing_uploaded(sides: Sides) -> None:
    assert sides.keys_under("") == [], "out wrote to the bucket before refusing"


@pytest.mark.integration
def test_out_refuses_a_name_in_would_refuse_before_uploading(sides: Sides, build: Path) -> None:
    (build / "dist").mkdir()
    (build / "dist" / "ok.txt").write_text("fine")
    (build / "dist" / "win\\path.txt").write_text("refused by every get")
    proc = sides.out(build, {"parts": [{"name": "p", "path": "dist"}], "version": "1"})
    assert_clean_failure(proc, "a get would refuse it")
    assert proc.returncode == 1
    assert_nothing_uploaded(sides)


@pytest.mark.integration
def test_out_refuses_a_manifest_too_large_for_any_get_before_uploading(sides: Sides, build: Path) -> None:
    """7,600 files with 3,000-byte paths of 'é' (six characters each in the JSON): about 66 MiB of manifest."""
    folder = build.joinpath("dist", *(f"{i:02d}" + "é" * 125 for i in range(11)))
    folder.mkdir(parents=True)
    for i in range(7600):
        (folder / (f"{i:05d}" + "é" * 120)).write_bytes(b"")
    proc = sides.out(build, {"parts": [{"name": "p", "path": "dist"}], "version": "1"})
    assert_clean_failure(proc, "lists 7611 files and folders")
    assert "pack fewer files" in proc.stderr
    assert_nothing_uploaded(sides)


@pytest.mark.integration
def test_out_never_packs_a_file_outside_the_build_folder(sides: Sides, build: Path, outside: Path) -> None:
    (build / "dist").mkdir()
    (build / "dist" / "app.tgz").write_bytes(b"app")
    os.symlink(outside / "id_rsa", build / "dist" / "id_rsa")
    proc = sides.out(build, {"parts": [{"name": "p", "path": "dist/*"}], "version": "1"})
    assert_clean_failure(proc, "'id_rsa' -> ")
    assert_nothing_uploaded(sides)
    os.unlink(build / "dist" / "id_rsa")
    os.symlink(outside, build / "linked")
    proc = sides.out(build, {"parts": [{"name": "p", "path": "linked/*"}], "version": "1"})
    assert_clean_failure(proc, "'linked' is a symlink where the path needs a folder")
    assert_nothing_uploaded(sides)


@pytest.mark.integration
def test_out_refuses_a_version_file_outside_without_showing_it(sides: Sides, build: Path, tmp_path: Path) -> None:
    (build / "dist").mkdir()
    (build / "dist" / "a").write_text("a")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "token").write_text(TOKEN)
    os.symlink(tmp_path / "x" / "token", build / "number")
    for version_file in ("../x/token", "number"):
        proc = sides.out(build, {"parts": [{"name": "p", "path": "dist"}], "version_file": version_file})
        assert_clean_failure(proc, f"params.version_file {version_file!r}")
        assert "s3cr3t" not in proc.stderr
    assert_nothing_uploaded(sides)


@pytest.mark.integration
def test_links_inside_the_part_round_trip_through_out_and_in(sides: Sides, build: Path, tmp_path: Path) -> None:
    part = build / "dist"
    (part / "real").mkdir(parents=True)
    (part / "real" / "f").write_bytes(b"data")
    os.link(part / "real" / "f", part / "hard")
    os.symlink("real", part / "l1")
    os.symlink("l1", part / "l2")
    os.symlink("l2/f", part / "chain")
    os.symlink("../l2", part / "real" / "back")
    sides.put(build, {"parts": [{"name": "p", "path": "dist"}], "version": "1"})
    dest = tmp_path / "dest"
    sides.get("1", dest)
    got = dest / "p"
    assert (got / "chain").read_bytes() == (got / "hard").read_bytes() == b"data"
    assert os.readlink(got / "l2") == "l1" and not (got / "hard").is_symlink()
    assert os.path.realpath(got / "real" / "back") == str(got / "real")
