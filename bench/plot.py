"""Plot wall time against data set size and refresh the figures in docs/benchmarks.md.

    MPLBACKEND=Agg .venv/bin/python bench/plot.py [--headline-gb 2]

Reads the newest result per size from bench/results/ (what `make bench` writes; not committed)
and bench/published/ (copies of the results the docs show, committed so the page can be
regenerated), copies the chosen ones to bench/published/, draws docs/benchmarks.png (one panel per
direction, one line per contender) and rewrites the part of docs/benchmarks.md between the
`<!-- bench:begin -->` and `<!-- bench:end -->` markers: the headline table (default: the 2 GiB
run), a table across sizes, and the peak-RSS comparison between sizes. The rest of the page is
prose and is left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import components  # noqa: E402
import cpu_split  # noqa: E402
from run import DOWN, UP, fmt, render_table  # noqa: E402

RESULTS = BENCH_DIR / "results"
PUBLISHED = BENCH_DIR / "published"
DOC = REPO / "docs" / "benchmarks.md"
PNG = REPO / "docs" / "benchmarks.png"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
STYLE = {
    "project-out": ("tab:blue", "-", "o"),
    "project-in": ("tab:blue", "-", "o"),
    "baseline-up": ("tab:red", "--", "s"),
    "baseline-down": ("tab:red", "--", "s"),
    "floor-up": ("tab:gray", ":", "^"),
    "floor-down": ("tab:gray", ":", "^"),
}


def load_results(sizes: set[float]) -> dict[float, tuple[Path, dict[str, Any]]]:
    """Newest result per bench_gb (by the run's timestamp) among results/ and published/."""
    best: dict[float, tuple[Path, dict[str, Any]]] = {}
    for folder in (RESULTS, PUBLISHED):
        for path in sorted(folder.glob("*gib.json")):
            res = json.loads(path.read_text())
            gb = float(res["bench_gb"])
            if gb not in sizes:
                continue
            if gb not in best or res["timestamp"] > best[gb][1]["timestamp"]:
                best[gb] = (path, res)
    return dict(sorted(best.items()))


def wall(res: dict[str, Any], name: str) -> float | None:
    med = res["contenders"][name]["median"]
    return med["wall_s"] if med else None


def plot(results: dict[float, dict[str, Any]]) -> None:
    import matplotlib

    if not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, side, title in ((axes[0], UP, "up: put / upload"), (axes[1], DOWN, "down: get / download")):
        for name in side:
            points = [(r["dataset"]["gib"], wall(r, name)) for r in results.values()]
            points = [(x, y) for x, y in points if y is not None]
            if not points:
                continue
            color, line, marker = STYLE[name]
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=color, linestyle=line, marker=marker, label=name)
        ax.set_title(title)
        ax.set_xlabel("data set (GiB)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("wall time (s), median")
    runs = ", ".join(f"{r['dataset']['gib']:.2f} GiB x{r['runs']}" for r in results.values())
    fig.suptitle(f"offline-bundle vs original pipelines' way vs aws s3 cp floor (rounds: {runs})", fontsize=10)
    fig.tight_layout()
    PNG.parent.mkdir(exist_ok=True)
    fig.savefig(PNG, dpi=110)
    print(f"wrote {PNG}")


def across_sizes(results: dict[float, dict[str, Any]]) -> str:
    names = UP + DOWN
    lines = [
        "| GiB | rounds | "
        + " | ".join(names)
        + " | out peak MB (PSS sum, else RSS sum) | in peak MB | load before/after |",
        "|---:|---:|" + "---:|" * len(names) + "---:|---:|---|",
    ]
    for res in results.values():
        rss = []
        for name in ("project-out", "project-in"):
            med = res["contenders"][name]["median"]
            rss.append(fmt(med.get("max_peak_pss_mb", med["max_peak_rss_mb"]), ".0f") if med else "n/a")
        load = res.get("load", {})
        lines.append(
            f"| {res['dataset']['gib']:.2f} | {res['runs']} | "
            + " | ".join(fmt(wall(res, n)) for n in names)
            + f" | {rss[0]} | {rss[1]} | {load.get('before', ['?'])[0]} / {load.get('after', ['?'])[0]} |"
        )
    return "\n".join(lines)


def rss_stability(results: dict[float, dict[str, Any]]) -> str:
    """Target: peak RSS the same (+-20 %) at 2 GiB and at 8 GiB."""
    if 2.0 not in results or 8.0 not in results:
        return "Peak RSS at 2 GiB vs 8 GiB: not measured (needs both runs)."
    out = []
    for name in ("project-out", "project-in"):
        a, b = results[2.0]["contenders"][name]["median"], results[8.0]["contenders"][name]["median"]
        if not a or not b:
            out.append(f"- {name}: not measured")
            continue
        key = "max_peak_pss_mb" if "max_peak_pss_mb" in a and "max_peak_pss_mb" in b else "max_peak_rss_mb"
        change = b[key] / a[key] - 1
        verdict = "met" if abs(change) <= 0.2 else "NOT MET"
        out.append(
            f"- [{verdict}] {name} peak {'PSS' if key == 'max_peak_pss_mb' else 'RSS'} sum {a[key]:.0f} MB at 2 GiB, "
            f"{b[key]:.0f} MB at 8 GiB ({change:+.0%}; target within +-20 %)"
        )
    return "Peak RSS at 2 GiB vs 8 GiB:\n\n" + "\n".join(out)


CHECK_MAX_S = 2.0  # issue 15: check on 300 versions and 50 junk objects under 2 s


def newest(kind: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest ``*-<kind>.json`` among results/ and published/, copied to published/."""
    found = [(p, json.loads(p.read_text())) for f in (RESULTS, PUBLISHED) for p in sorted(f.glob(f"*-{kind}.json"))]
    if not found:
        return None
    path, res = max(found, key=lambda pr: pr[1]["timestamp"])
    if path.parent != PUBLISHED:
        PUBLISHED.mkdir(exist_ok=True)
        shutil.copyfile(path, PUBLISHED / path.name)
    return path, res


def cpu_section() -> str:
    found = newest("cpusplit")
    if found is None:
        return "not measured: run `.venv/bin/python bench/cpu_split.py`"
    split = found[1]
    return "\n".join([*cpu_split.render(split), "", *components.render_model(components.model(split))])


def check_table(res: dict[str, Any]) -> str:
    lines = [
        f"`make bench-check`, run {res['timestamp']}, medians of {res['runs']} runs, load average "
        f"{res['load_before']:.1f} before and {res['load_after']:.1f} after:",
        "",
        "| bucket | request | versions listed | warning lines | wall s | CPU s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for c in res["cases"]:
        lines.append(
            f"| {c['bucket']} | {c['request']} | {c['answer']} | {c.get('warning_lines', 0)} | "
            f"{c['wall_s']:.2f} | {c['cpu_s']:.2f} |"
        )
    junk = [c["wall_s"] for c in res["cases"] if "junk" in c["bucket"]]
    worst = max(junk) if junk else None
    verdict = "not measured" if worst is None else ("met" if worst < CHECK_MAX_S and res["same"] else "NOT MET")
    lines += [
        "",
        f"- [{verdict}] check with {res['versions']} versions and {res['junk']} junk objects < {CHECK_MAX_S:g} s, "
        f"the same answers as without junk: slowest {fmt(worst)} s, same answers: {res['same']}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--headline-gb", type=float, default=2.0, help="size whose full table heads the page")
    parser.add_argument("--sizes", default="1,2,4,8", help="BENCH_GB values to show (comma-separated)")
    parser.add_argument("--no-doc", action="store_true", help="only draw the PNG")
    args = parser.parse_args()

    found = load_results({float(x) for x in args.sizes.split(",")})
    if not found:
        print("plot: no results in bench/results or bench/published; run `make bench` first", file=sys.stderr)
        return 1
    PUBLISHED.mkdir(exist_ok=True)
    for path, res in found.values():
        target = PUBLISHED / f"{res['timestamp']}-{res['bench_gb']:g}gib.json"
        if path.resolve() != target.resolve():
            shutil.copyfile(path, target)
    results = {gb: res for gb, (_p, res) in found.items()}
    check = newest("check")
    plot(results)
    if args.no_doc:
        return 0

    headline = results.get(args.headline_gb) or results[max(results)]
    block = "\n\n".join(
        [
            BEGIN,
            "<!-- generated by bench/plot.py from bench/published/*.json; edit the prose outside the markers -->",
            "### Headline run\n\n" + render_table(headline),
            "### Wall time (s, medians) across sizes\n\n" + across_sizes(results),
            rss_stability(results),
            "### Where the CPU goes, and a larger worker\n\n" + cpu_section(),
            "### `check` on 300 versions and 50 junk objects\n\n"
            + (check_table(check[1]) if check else "not measured: run `make bench-check`"),
            "![wall time vs data set size](benchmarks.png)",
            END,
        ]
    )
    text = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    DOC.write_text(head + block + tail)
    print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
