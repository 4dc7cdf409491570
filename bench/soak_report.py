"""Write the figures of ``make soak`` into docs/operations.md, between its soak markers.

The figures come from the JSON the cluster tests leave in SOAK_RESULTS; the section is rewritten
whole on every run, so the page always shows the newest soak and nothing stale.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BEGIN = "<!-- soak:begin (written by make soak: bench/soak_report.py) -->"
END = "<!-- soak:end -->"

FAULTS = [
    ("volume_killed_mid_put", "a volume server SIGKILLed a third into a put", "put_total_s"),
    ("volume_killed_mid_get", "a volume server SIGKILLed a third into a get", "get_total_s"),
    ("gateway_restarted_mid_put", "the S3 gateway restarted a third into a put", "put_total_s"),
    ("gateway_restarted_mid_get", "the S3 gateway restarted a third into a get", "get_total_s"),
    ("get_connection_cuts", "connections reset during a get (fault proxy)", "get_with_cuts_s"),
    ("put_connection_cuts", "connections reset during a put (fault proxy)", "put_with_cuts_s"),
    ("out_sigkilled", "`out` SIGKILLed a third into its upload, then run again", "rerun_s"),
]


def mib(n: float) -> str:
    return f"{n / (1 << 20):,.0f} MiB" if n >= 1 << 20 else f"{n:,.0f} B"


def render(doc: dict[str, Any], when: str) -> str:
    sizes = doc.get("sizes", {})
    lines = [
        BEGIN,
        f"Last run: {when}, `make soak` (transfers of {mib(sizes.get('transfer', 0))}, "
        f"{sizes.get('cuts', '?')} connection cuts), a SeaweedFS cluster of one master, three volume servers "
        "(replication 001), a filer and the S3 gateway on loopback.",
        "",
        "| fault | survived | total time | what it cost |",
        "|---|---|---|---|",
    ]
    for key, what, total in FAULTS:
        f = doc.get(key)
        if f is None:
            lines.append(f"| {what} | not run | – | – |")
            continue
        cost = []
        if "bytes_resent_total" in f:
            cost.append(f"{mib(f['bytes_resent_total'])} re-sent in all, {mib(f['bytes_resent_per_cut'])} per cut")
        if "gateway_down_s" in f:
            cost.append(f"gateway down {f['gateway_down_s']} s")
        if "victim_held_bytes" in f:
            cost.append(f"the killed server held {mib(f['victim_held_bytes'])} of the bucket")
        if "uploads_left_by_dead_run" in f:
            cost.append(f"{f['uploads_left_by_dead_run']} open upload left, aborted by `prune --grace-hours 0`")
        if "retry_lines" in f:
            cost.append(f"{f['retry_lines']} retry line(s) on stderr")
        lines.append(f"| {what} | {'yes' if f.get('survived') else 'NO'} | {f.get(total, '?')} s | {'; '.join(cost)} |")
    lines += ["", "| concurrency | result |", "|---|---|"]
    if "four_puts_at_once" in doc:
        f = doc["four_puts_at_once"]
        lines.append(f"| four puts of different versions at once | {f['committed']} committed, {f['wall_s']} s |")
    if "two_puts_one_version" in doc:
        lines.append(
            f"| two puts of one version | one wins; the other: `{doc['two_puts_one_version']['loser_message']}` |"
        )
    if "four_gets_at_once" in doc:
        f = doc["four_gets_at_once"]
        lines.append(f"| four gets of one version at once | all whole, {f['wall_s']} s |")
    if "check_during_put" in doc:
        f = doc["check_during_put"]
        lines.append(f"| `check` during a put | {f['checks']} checks, never half a version |")
    if "check_300_versions" in doc:
        f = doc["check_300_versions"]
        lines += [
            "",
            f"| `check` over {f['versions']} versions (median of {f['runs']}) | latest | from the middle |",
            "|---|---|---|",
            f"| clean | {f['latest_s']} s | {f['from_middle_s']} s |",
            f"| with {f['junk']} junk objects a carrier added | {f['latest_with_junk_s']} s | "
            f"{f['from_middle_with_junk_s']} s |",
        ]
    if "scale_8gib" in doc:
        s = doc["scale_8gib"]
        lines += [
            "",
            "| bundle | out | out peak RSS | in | in peak RSS | in wrote (× payload) |",
            "|---|---|---|---|---|---|",
        ]
        for gib, r in sorted(s.items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"| {gib} GiB | {r['out_wall_s']} s | {r['out_peak_rss_mb']} MB | {r['in_wall_s']} s | "
                f"{r['in_peak_rss_mb']} MB | {r['in_disk_write_ratio']} |"
            )
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
