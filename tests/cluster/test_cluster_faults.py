"""Faults on a real SeaweedFS cluster: a volume server killed, the S3 gateway restarted, connections
cut through a fault proxy, and ``out`` killed outright.

What must hold under every fault: a put either commits a complete version or leaves none visible; a
get either explodes the whole bundle with every hash checked or leaves nothing; retries resume
instead of starting over, and how many bytes each fault costs is measured, not guessed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import Sizes, file_sha256, make_payload
from tests.support.background import Background
from tests.support.cli import run_cli
from tests.support.cluster import SeaweedCluster
from tests.support.faultproxy import Direction, FaultProxy
from tests.support.sides import Sides

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

PUT = {"parts": [{"name": "big", "path": "big"}], "version": "1.0.0"}


def frozen(proxy: FaultProxy, start: Callable[[], Background], nbytes: int, direction: Direction) -> Background:
    """Start a transfer through ``proxy`` and return once it is held after ``nbytes`` in ``direction``.

    Why a hold and not a sign of progress: a fault timed by progress lines or staged bytes once came
    after a fast machine's put had committed, and the test then proved nothing (or failed). Held,
    the transfer waits at a known point for the fault; :meth:`FaultProxy.release` lets it go on.
    """
    proxy.hold_after(nbytes, direction=direction)
    bg = start()
    bg.wait_until(lambda: proxy.held > 0, what=f"the transfer held after {nbytes} bytes {direction}")
    return bg


@pytest.fixture
def proxy(cluster: SeaweedCluster) -> Any:
    host, port = cluster.endpoint.removeprefix("http://").split(":")
    with FaultProxy(host, int(port), lifetime=1800) as p:
        yield p


def still_running(bg: Background) -> None:
    """The fault must have come while the transfer ran, or the test proved nothing."""
    assert bg.running(), f"the transfer had ended before the fault: make the payload larger\n{bg.stderr()}"


def bucket_bytes_on(volume_dir: Path, bucket: str) -> int:
    """Bytes a volume server holds for ``bucket`` (SeaweedFS keeps one collection per bucket)."""
    return sum(f.stat().st_size for f in volume_dir.glob(f"{bucket}_*.dat"))


def start_put(sides: Sides, build: Path, params: dict[str, Any], source: dict[str, Any] | None = None) -> Background:
    return Background.asset("out", {"source": source or sides.put_source, "params": params}, build)


def start_get(sides: Sides, version: str, dest: Path, source: dict[str, Any] | None = None) -> Background:
    dest.mkdir(parents=True, exist_ok=True)
    req = {"source": source or sides.get_source, "version": {"version": version}}
    return Background.asset("in", req, dest)


def assert_ok(bg: Background, timeout: float = 900) -> str:
    proc = bg.finish(timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def retries_in(stderr: str) -> int:
    return sum(1 for line in stderr.splitlines() if "retry" in line.lower())


@pytest.fixture
def big(tmp_path: Path, sizes: Sizes) -> tuple[Path, str]:
    build = tmp_path / "build"
    return build, make_payload(build / "big", sizes.transfer)


def put_clean(sides: Sides, build: Path, version: str = "1.0.0") -> None:
    sides.put(build, {**PUT, "version": version})


# ------------------------------------------------------------------------------------ volume servers


def test_put_survives_a_volume_server_killed_midway(
    csides: Sides,
    cluster: SeaweedCluster,
    proxy: FaultProxy,
    big: tuple[Path, str],
    tmp_path: Path,
    sizes: Sizes,
    figures: dict,
) -> None:
    build, sha = big
    via_proxy = {**csides.put_source, "endpoint": proxy.url}
    bg = frozen(proxy, lambda: start_put(csides, build, PUT, source=via_proxy), sizes.transfer // 3, "up")
    victim = cluster.volumes[0]
    held = bucket_bytes_on(victim.workdir, csides.bucket)
    victim.kill()
    still_running(bg)
    killed_at = bg.elapsed
    proxy.release()
    stderr = assert_ok(bg)
    assert held > 0, "the killed volume server held none of this bucket: the test would prove nothing"
    assert csides.check() == ["1.0.0"]
    dest = tmp_path / "dest"
    csides.get("1.0.0", dest)  # with the victim still down: the replicas serve
    assert file_sha256(dest / "big" / "payload.bin") == sha
    figures["volume_killed_mid_put"] = {
        "bytes": sizes.transfer,
        "killed_after_s": round(killed_at, 1),
        "put_total_s": round(bg.elapsed, 1),
        "victim_held_bytes": held,
        "retry_lines": retries_in(stderr),
        "survived": True,
    }


def test_get_survives_a_volume_server_killed_midway(
    csides: Sides,
    cluster: SeaweedCluster,
    proxy: FaultProxy,
    big: tuple[Path, str],
    tmp_path: Path,
    sizes: Sizes,
    figures: dict,
) -> None:
    build, sha = big
    put_clean(csides, build)
    victim = cluster.volumes[1]
    held = bucket_bytes_on(victim.workdir, csides.bucket)
    assert held > 0, "the volume server to kill holds none of this bucket: the test would prove nothing"
    dest = tmp_path / "dest"
    via_proxy = {**csides.get_source, "endpoint": proxy.url}
    bg = frozen(proxy, lambda: start_get(csides, "1.0.0", dest, source=via_proxy), sizes.transfer // 5, "down")
    victim.kill()
    still_running(bg)
    killed_at = bg.elapsed
    proxy.release()
    stderr = assert_ok(bg)
    assert file_sha256(dest / "big" / "payload.bin") == sha
    figures["volume_killed_mid_get"] = {
        "bytes": sizes.transfer,
        "killed_after_s": round(killed_at, 1),
        "get_total_s": round(bg.elapsed, 1),
        "victim_held_bytes": held,
        "retry_lines": retries_in(stderr),
        "survived": True,
    }


# ------------------------------------------------------------------------------------- the S3 gateway


def test_put_survives_the_gateway_restarting_midway(
    csides: Sides,
    cluster: SeaweedCluster,
    proxy: FaultProxy,
    big: tuple[Path, str],
    tmp_path: Path,
    sizes: Sizes,
    figures: dict,
) -> None:
    build, sha = big
    via_proxy = {**csides.put_source, "endpoint": proxy.url}
    bg = frozen(proxy, lambda: start_put(csides, build, PUT, source=via_proxy), sizes.transfer // 3, "up")
    t0 = time.monotonic()
    cluster.s3.stop()
    still_running(bg)
    proxy.release()  # the held requests now meet a gateway that is gone
    cluster.restart_s3()
    down_s = time.monotonic() - t0
    stderr = assert_ok(bg)
    assert csides.check() == ["1.0.0"]
    dest = tmp_path / "dest"
    csides.get("1.0.0", dest)
    assert file_sha256(dest / "big" / "payload.bin") == sha
    figures["gateway_restarted_mid_put"] = {
        "bytes": sizes.transfer,
        "gateway_down_s": round(down_s, 2),
        "put_total_s": round(bg.elapsed, 1),
        "retry_lines": retries_in(stderr),
        "survived": True,
    }


def test_get_survives_the_gateway_restarting_midway(
    csides: Sides,
    cluster: SeaweedCluster,
    proxy: FaultProxy,
    big: tuple[Path, str],
    tmp_path: Path,
    sizes: Sizes,
    figures: dict,
) -> None:
    build, sha = big
    put_clean(csides, build)
    dest = tmp_path / "dest"
    via_proxy = {**csides.get_source, "endpoint": proxy.url}
    bg = frozen(proxy, lambda: start_get(csides, "1.0.0", dest, source=via_proxy), sizes.transfer // 5, "down")
    t0 = time.monotonic()
    cluster.s3.stop()
    still_running(bg)
    proxy.release()  # the held responses now come from a gateway that is gone
    cluster.restart_s3()
    down_s = time.monotonic() - t0
    stderr = assert_ok(bg)
    assert file_sha256(dest / "big" / "payload.bin") == sha
    figures["gateway_restarted_mid_get"] = {
        "bytes": sizes.transfer,
        "gateway_down_s": round(down_s, 2),
        "get_total_s": round(bg.elapsed, 1),
        "retry_lines": retries_in(stderr),
        "survived": True,
    }


# ------------------------------------------------------------------------------- connections cut


def test_get_through_cut_connections_resumes_by_range(
    csides: Sides, proxy: FaultProxy, big: tuple[Path, str], tmp_path: Path, sizes: Sizes, figures: dict
) -> None:
    build, sha = big
    put_clean(csides, build)
    via_proxy = {**csides.get_source, "endpoint": proxy.url}
    # The same get without faults, through the same proxy: the bytes any get costs.
    before = proxy.snapshot()
    clean = start_get(csides, "1.0.0", tmp_path / "clean", source=via_proxy)
    assert_ok(clean)
    clean_down = proxy.snapshot().bytes_down - before.bytes_down

    proxy.cut_every(sizes.transfer // (sizes.cuts + 1), direction="down", times=sizes.cuts)
    before = proxy.snapshot()
    dest = tmp_path / "dest"
    bg = start_get(csides, "1.0.0", dest, source=via_proxy)
    stderr = assert_ok(bg)
    after = proxy.snapshot()
    assert after.cuts - before.cuts == sizes.cuts, "not every armed cut happened: the test proved less than it says"
    assert file_sha256(dest / "big" / "payload.bin") == sha
    resent = (after.bytes_down - before.bytes_down) - clean_down
    # Resuming by range re-sends only what was in flight: the bytes in the client's socket buffer when
    # the reset came, which the kernel drops (about 2 MiB on loopback). Starting over from byte 0 would
    # re-send half the payload per cut on average.
    assert resent < sizes.cuts * (4 << 20), f"{resent} bytes re-sent for {sizes.cuts} cuts"
    figures["get_connection_cuts"] = {
        "bytes": sizes.transfer,
        "cuts": sizes.cuts,
        "bytes_resent_total": resent,
        "bytes_resent_per_cut": round(resent / sizes.cuts),
        "get_clean_s": round(clean.elapsed, 1),
        "get_with_cuts_s": round(bg.elapsed, 1),
        "retry_lines": retries_in(stderr),
        "survived": True,
    }


def test_put_through_cut_connections_retries_parts(
    csides: Sides, proxy: FaultProxy, big: tuple[Path, str], tmp_path: Path, sizes: Sizes, figures: dict
) -> None:
    build, _ = big
    via_proxy = {**csides.put_source, "endpoint": proxy.url}
    before = proxy.snapshot()
    clean = start_put(csides, build, PUT, source=via_proxy)
    assert_ok(clean)
    clean_up = proxy.snapshot().bytes_up - before.bytes_up

    other = tmp_path / "other"
    sha = make_payload(other / "big", sizes.transfer, seed=1)  # other bytes: nothing to reuse
    proxy.cut_every(sizes.transfer // (sizes.cuts + 1), direction="up", times=sizes.cuts)
    before = proxy.snapshot()
    bg = start_put(csides, other, {**PUT, "version": "2.0.0"}, source=via_proxy)
    stderr = assert_ok(bg)
    after = proxy.snapshot()
    assert after.cuts - before.cuts == sizes.cuts, "not every armed cut happened: the test proved less than it says"
    resent = (after.bytes_up - before.bytes_up) - clean_up
    assert csides.check() == ["2.0.0"]
    dest = tmp_path / "dest"
    csides.get("2.0.0", dest)
    assert file_sha256(dest / "big" / "payload.bin") == sha
    figures["put_connection_cuts"] = {
        "bytes": sizes.transfer,
        "cuts": sizes.cuts,
        "bytes_resent_total": resent,
        "bytes_resent_per_cut": round(resent / sizes.cuts),
        "put_clean_s": round(clean.elapsed, 1),
        "put_with_cuts_s": round(bg.elapsed, 1),
        "retry_lines": retries_in(stderr),
        "survived": True,
    }


# ------------------------------------------------------------------------------------ out killed


def test_out_killed_outright_leaves_no_version_and_prune_cleans_up(
    csides: Sides, proxy: FaultProxy, big: tuple[Path, str], tmp_path: Path, sizes: Sizes, figures: dict
) -> None:
    build, sha = big
    small = tmp_path / "small"
    make_payload(small / "big", 1 << 20, seed=7)
    csides.put(small, {**PUT, "version": "0.9.0"})  # a version that must survive the prune
    before = set(csides.keys_under(""))

    # The put is frozen a third of the way up (the proxy holds every later byte), so the kill lands
    # before any commit however fast the machine: a kill timed by progress lines once came after it.
    via_proxy = {**csides.put_source, "endpoint": proxy.url}
    bg = frozen(proxy, lambda: start_put(csides, build, PUT, source=via_proxy), sizes.transfer // 3, "up")
    still_running(bg)
    os.kill(bg.proc.pid, signal.SIGKILL)
    bg.proc.wait(timeout=30)
    proxy.release()
    assert csides.check() == ["0.9.0"], "a killed put must leave no version visible"
    left = csides.client().list_multipart_uploads(Bucket=csides.bucket).get("Uploads", [])

    rerun = start_put(csides, build, PUT)
    assert_ok(rerun)
    assert csides.check("0.9.0") == ["0.9.0", "1.0.0"]

    config = tmp_path / "prune.yml"
    config.write_text(yaml.safe_dump({k: v for k, v in csides.put_source.items()}))
    proc = run_cli("prune", "--config", config, "--keep", "2", "--grace-hours", "0")
    assert proc.returncode == 0, proc.stderr
    after_uploads = csides.client().list_multipart_uploads(Bucket=csides.bucket).get("Uploads", [])
    assert after_uploads == [], "prune left the dead run's multipart upload"
    for version in ("0.9.0", "1.0.0"):  # nothing else was removed: both versions still read back whole
        dest = tmp_path / f"dest-{version}"
        csides.get(version, dest)
    assert file_sha256(tmp_path / "dest-1.0.0" / "big" / "payload.bin") == sha
    assert before <= set(csides.keys_under("")), "prune removed an object that was there before the dead run"
    figures["out_sigkilled"] = {
        "bytes": sizes.transfer,
        "uploads_left_by_dead_run": len(left),
        "rerun_s": round(rerun.elapsed, 1),
        "prune_aborted_uploads": len(left),
        "survived": True,
    }
