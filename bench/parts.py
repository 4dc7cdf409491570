"""One part at a time against two side by side: what a second gpg buys `out` and `in` on this machine.

The main data set is split into two parts (hard links, no second copy): part `a` holds the first
large file, the 200 MiB-scaled file and half of the small files; part `b` the two other large files
and the other half (about 0.8 and 1.2 GiB of a 2 GiB data set). Each round puts the two-part bundle
and gets it back with ``OFFLINE_BUNDLE_PARALLEL_PARTS=1`` and with ``=2``, the order alternating
between rounds; the figures are medians, and the ratio is paired per round.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from run import Bench

PARTS = ("a", "b")


def split_dataset(data: Path, build: Path) -> int:
    """Hard-link the data set's files into ``build/a`` and ``build/b``; the number of files."""
    files = sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file())
    large = [p for p in files if (data / p).stat().st_size > 4096]  # big-1..3.bin, medium.bin
    small = [p for p in files if p not in large]
    groups = {
        "a": [large[0], *large[3:], *small[: len(small) // 2]],
        "b": [*large[1:3], *small[len(small) // 2 :]],
    }
    for name, members in groups.items():
        for rel in members:
            dst = build / name / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                os.link(data / rel, dst)
    return len(files)


def run(bench: Bench, rounds: int) -> dict[str, Any]:
    build = bench.work / "parts"
    files = split_dataset(bench.build / "data", build)
    samples: dict[str, list[dict[str, Any]]] = {f"{side}-{n}": [] for side in ("out", "in") for n in (1, 2)}
    for r in range(rounds):
        order = (1, 2) if r % 2 == 0 else (2, 1)
        for n in order:
            env = {"OFFLINE_BUNDLE_PARALLEL_PARTS": str(n)}
            bucket = bench.new_bucket(f"p{r + 1}x{n}")
            version = f"p{r + 1}x{n}.{bench.stamp}"
            samples[f"out-{n}"].append(
                bench.attempt(
                    f"parts-out-{n}",
                    lambda: bench.project_out(bucket, build, version, list(PARTS), env, f"parts-out-{n}"),  # noqa: B023
                    r + 1,
                )
            )
            samples[f"in-{n}"].append(
                bench.attempt(
                    f"parts-in-{n}",
                    lambda: bench.project_in(bucket, version, files, env, f"parts-in-{n}"),  # noqa: B023
                    r + 1,
                )
            )
            bench.drop_bucket(bucket)
    return summarise(samples, bench.data_bytes, rounds)


def summarise(samples: dict[str, list[dict[str, Any]]], data_bytes: int, rounds: int) -> dict[str, Any]:
    gib = data_bytes / (1 << 30)
    out: dict[str, Any] = {"rounds": rounds, "parts": len(PARTS), "samples": samples}
    for key, runs in samples.items():
        good = [r for r in runs if "error" not in r]
        out[key] = (
            {
                "wall_s": statistics.median(r["wall_s"] for r in good),
                "cpu_s_per_gib": statistics.median(r["cpu_s"] for r in good) / gib,
                "peak_rss_mb": max(r["peak_rss_bytes"] for r in good) / 1e6,
                "peak_pss_mb": max(r["peak_pss_bytes"] for r in good) / 1e6,
            }
            if good
            else None
        )
    for side in ("out", "in"):
        pairs = [
            one["wall_s"] / two["wall_s"]
            for one, two in zip(samples[f"{side}-1"], samples[f"{side}-2"], strict=True)
            if "wall_s" in one and "wall_s" in two
        ]
        out[f"{side}_speedup"] = statistics.median(pairs) if pairs else None
    return out


def render(res: dict[str, Any]) -> list[str]:
    """Markdown lines for docs/benchmarks.md (bench/plot.py) and the console."""
    lines = [
        f"Two parts, one at a time against side by side (`OFFLINE_BUNDLE_PARALLEL_PARTS`), medians of "
        f"{res['rounds']} round(s):",
        "",
        "| step | parts at once | wall s | CPU s/GiB | peak RSS MB | peak PSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for side in ("out", "in"):
        for n in (1, 2):
            m = res.get(f"{side}-{n}")
            if m is None:
                lines.append(f"| {side} | {n} | FAILED | | | |")
            else:
                lines.append(
                    f"| {side} | {n} | {m['wall_s']:.2f} | {m['cpu_s_per_gib']:.2f} | {m['peak_rss_mb']:.0f} "
                    f"| {m['peak_pss_mb']:.0f} |"
                )
    for side in ("out", "in"):
        s = res.get(f"{side}_speedup")
        lines.append("")
        lines.append(
            f"{side}: two parts side by side take {1 / s:.2f} x the wall time of one at a time (paired per round)"
            if s
            else f"{side}: not measured"
        )
    return lines
