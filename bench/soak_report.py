"""Write the figures of ``make soak`` into docs/operations.md, between its soak markers.

The figures come from the JSON the cluster tests leave in SOAK_RESULTS; the section is rewritten
whole on every run, so the page always shows the newest soak and nothing stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BEGIN = "<!-- soak:begin (written by make soak: bench/soak_report.py) -->"
END = "<!-- soak:end -->"

FAULTS = [
    ("volume_killed_mid_put", "a volume server SIGKILLed a third into a put", "put_total_s"),
    ("volume_killed_mid_get", "a volume server SIGKILLed a fifth into a get", "get_total_s"),
    ("gateway_restarted_mid_put", "the S3 gateway restarted a third into a put", "put_total_s"),
    ("gateway_restarted_mid_get", "the S3 gateway restarted a fifth into a get", "get_total_s"),
    ("get_connection_cuts", "connections reset during a get (fault proxy)", "get_with_cuts_s"),
    ("put_connection_cuts", "connections reset during a put (fault proxy)", "put_with_cuts_s"),
    ("out_sigkilled", "`out` SIGKILLed a third into its upload, then run again", "rerun_s"),
]


def mib(n: float) -> str:
    return f"{n / (1 << 20):,.0f} MiB" if n >= 1 << 20 else f"{n:,.0f} B"


def fault_rows(doc: dict[str, Any]) -> list[str]:
    rows = ["| fault | survived | total time | what it cost |", "|---|---|---|---|"]
    for key, what, total in FAULTS:
        f = doc.get(key)
        if f is None:
            rows.append(f"| {what} | not run | – | – |")
            continue
        cost = [text(f) for field, text in COSTS if field in f]
        rows.append(f"| {what} | {'yes' if f.get('survived') else 'NO'} | {f.get(total, '?')} s | {'; '.join(cost)} |")
    return rows


# What a fault cost, by the field its test recorded.
COSTS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    (
        "bytes_resent_total",
        lambda f: f"{mib(f['bytes_resent_total'])} re-sent in all, {mib(f['bytes_resent_per_cut'])} per cut",
    ),
    ("gateway_down_s", lambda f: f"gateway down {f['gateway_down_s']} s"),
    ("victim_held_bytes", lambda f: f"the killed server held {mib(f['victim_held_bytes'])} of the bucket"),
    (
        "uploads_left_by_dead_run",
        lambda f: f"{f['uploads_left_by_dead_run']} open upload left, aborted by `prune --grace-hours 0`",
    ),
    ("retry_lines", lambda f: f"{f['retry_lines']} retry line(s) on stderr"),
]

# Each concurrency test's row, by the key its figures are under.
CONCURRENCY: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    (
        "four_puts_at_once",
        lambda f: f"| four puts of different versions at once | {f['committed']} committed, {f['wall_s']} s |",
    ),
    ("two_puts_one_version", lambda f: f"| two puts of one version | one wins; the other: `{f['loser_message']}` |"),
    ("four_gets_at_once", lambda f: f"| four gets of one version at once | all whole, {f['wall_s']} s |"),
    ("check_during_put", lambda f: f"| `check` during a put | {f['checks']} checks, never half a version |"),
]


def concurrency_rows(doc: dict[str, Any]) -> list[str]:
    return ["| concurrency | result |", "|---|---|"] + [row(doc[key]) for key, row in CONCURRENCY if key in doc]


def check_rows(f: dict[str, Any]) -> list[str]:
    return [
        f"| `check` over {f['versions']} versions (median of {f['runs']}) | latest | from the middle |",
        "|---|---|---|",
        f"| clean | {f['latest_s']} s | {f['from_middle_s']} s |",
        f"| with {f['junk']} junk objects a carrier added | {f['latest_with_junk_s']} s | "
        f"{f['from_middle_with_junk_s']} s |",
    ]


def scale_rows(s: dict[str, Any]) -> list[str]:
    rows = [
        "| bundle | out | out peak RSS | in | in peak RSS | in wrote (× payload) |",
        "|---|---|---|---|---|---|",
    ]
    for gib, r in sorted(s.items(), key=lambda kv: int(kv[0])):
        rows.append(
            f"| {gib} GiB | {r['out_wall_s']} s | {r['out_peak_rss_mb']} MB | {r['in_wall_s']} s | "
            f"{r['in_peak_rss_mb']} MB | {r['in_disk_write_ratio']} |"
        )
    return rows


def render(doc: dict[str, Any], when: str) -> str:
    sizes = doc.get("sizes", {})
    lines = [
        BEGIN,
        f"Last run: {when}, `make soak` (transfers of {mib(sizes.get('transfer', 0))}, "
        f"{sizes.get('cuts', '?')} connection cuts), a SeaweedFS cluster of one master, three volume servers "
        "(replication 001), a filer and the S3 gateway on loopback.",
        "",
        *fault_rows(doc),
        "",
        *concurrency_rows(doc),
    ]
    if "check_300_versions" in doc:
        lines += ["", *check_rows(doc["check_300_versions"])]
    if "scale_8gib" in doc:
        lines += ["", *scale_rows(doc["scale_8gib"])]
    lines.append(END)
    return "\n".join(lines)


def main(results: str, page: str = "docs/operations.md") -> int:
    doc = json.loads(Path(results).read_text())
    text = Path(page).read_text()
    section = render(doc, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    Path(page).write_text(text)
    print(f"{page}: soak figures written from {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
