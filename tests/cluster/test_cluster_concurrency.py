"""Concurrency on a real SeaweedFS cluster: puts racing, gets in parallel, check during a put.

A resource is used by many builds at once (a pipeline's jobs, several pipelines, an operator with
the CLI): what one sees must never be half of what another wrote.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.conftest import Sizes, file_sha256, make_payload
from tests.support.background import Background
from tests.support.sides import Sides

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def params(version: str) -> dict:
    return {"parts": [{"name": "big", "path": "big"}], "version": version}


def start_put(sides: Sides, build: Path, version: str) -> Background:
    return Background.asset("out", {"source": sides.put_source, "params": params(version)}, build)


def start_get(sides: Sides, version: str, dest: Path) -> Background:
    dest.mkdir(parents=True, exist_ok=True)
    return Background.asset("in", {"source": sides.get_source, "version": {"version": version}}, dest)


def test_four_puts_of_different_versions_at_once(csides: Sides, tmp_path: Path, sizes: Sizes, figures: dict) -> None:
    versions = ["1.0.0", "1.1.0", "2.0.0", "10.0.0"]
    builds = {}
    for i, v in enumerate(versions):
        builds[v] = (tmp_path / f"b{i}", make_payload(tmp_path / f"b{i}" / "big", sizes.concurrent, seed=i))
    runs = {v: start_put(csides, builds[v][0], v) for v in versions}
    for v, bg in runs.items():
        proc = bg.finish()
        assert proc.returncode == 0, f"{v}: {proc.stderr[-3000:]}"
    assert csides.check("1.0.0") == versions  # every one committed, in SemVer order (10 after 2)
    for v in versions:
        dest = tmp_path / f"d{v}"
        csides.get(v, dest)
        assert file_sha256(dest / "big" / "payload.bin") == builds[v][1], f"{v} holds another put's bytes"
    figures["four_puts_at_once"] = {
        "bytes_each": sizes.concurrent,
        "wall_s": round(max(bg.elapsed for bg in runs.values()), 1),
        "committed": len(versions),
    }


def test_two_puts_of_one_version_exactly_one_wins(csides: Sides, tmp_path: Path, sizes: Sizes, figures: dict) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    sha = {
        k: make_payload(folder / "big", sizes.concurrent, seed=i)
        for i, (k, folder) in enumerate({"a": a, "b": b}.items())
    }
    runs = {"a": start_put(csides, a, "1.0.0"), "b": start_put(csides, b, "1.0.0")}
    procs = {k: bg.finish() for k, bg in runs.items()}
    winners = [k for k, p in procs.items() if p.returncode == 0]
    assert len(winners) == 1, {k: (p.returncode, p.stderr[-1500:]) for k, p in procs.items()}
    loser = procs["b" if winners == ["a"] else "a"]
    errors = [ln for ln in loser.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "1.0.0" in errors[0], loser.stderr[-2000:]
    assert "Traceback" not in loser.stderr
    assert loser.stdout.strip() == ""
    dest = tmp_path / "dest"
    csides.get("1.0.0", dest)
    assert file_sha256(dest / "big" / "payload.bin") == sha[winners[0]], "the committed version mixes two puts"
    figures["two_puts_one_version"] = {"winners": 1, "loser_message": errors[0]}


def test_four_gets_of_one_version_at_once(csides: Sides, tmp_path: Path, sizes: Sizes, figures: dict) -> None:
    build = tmp_path / "build"
    sha = make_payload(build / "big", sizes.concurrent * 2)
    csides.put(build, params("1.0.0"))
    runs = [start_get(csides, "1.0.0", tmp_path / f"d{i}") for i in range(4)]
    for i, bg in enumerate(runs):
        proc = bg.finish()
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert file_sha256(tmp_path / f"d{i}" / "big" / "payload.bin") == sha
    figures["four_gets_at_once"] = {
        "bytes_each": sizes.concurrent * 2,
        "wall_s": round(max(bg.elapsed for bg in runs), 1),
    }


def test_check_during_a_put_never_lists_half_a_version(
    csides: Sides, tmp_path: Path, sizes: Sizes, figures: dict
) -> None:
    first = tmp_path / "first"
    make_payload(first / "big", 1 << 20)
    csides.put(first, params("1.0.0"))
    build = tmp_path / "build"
    sha = make_payload(build / "big", sizes.transfer, seed=3)
    bg = start_put(csides, build, "2.0.0")
    answers: list[list[str]] = []
    fetched = False
    while bg.running() or not fetched:
        seen = csides.check("1.0.0")
        answers.append(seen)
        assert seen in (["1.0.0"], ["1.0.0", "2.0.0"]), seen
        if "2.0.0" in seen and not fetched:
            dest = tmp_path / "dest"  # the moment it is listed, it must read back whole
            csides.get("2.0.0", dest)
            assert file_sha256(dest / "big" / "payload.bin") == sha
            fetched = True
        if not bg.running() and bg.proc.returncode != 0:
            break
    proc = bg.finish()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert fetched
    assert answers[0] == ["1.0.0"], "the first check ran after the put had committed: it tested nothing"
    figures["check_during_put"] = {
        "checks": len(answers),
        "before_commit": sum(1 for a in answers if a == ["1.0.0"]),
    }
