"""``make soak`` writes its figures between the markers of docs/operations.md, and only there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import soak_report  # noqa: E402


def test_figures_replace_the_section_and_nothing_else(tmp_path: Path) -> None:
    page = tmp_path / "operations.md"
    page.write_text(f"# Operations\n\nbefore\n\n{soak_report.BEGIN}\nNot yet measured.\n{soak_report.END}\n\nafter\n")
    results = tmp_path / "soak.json"
    results.write_text(
        json.dumps(
            {
                "sizes": {"transfer": 1 << 30, "cuts": 20},
                "volume_killed_mid_put": {"survived": True, "put_total_s": 12.5, "victim_held_bytes": 3 << 20},
                "get_connection_cuts": {
                    "survived": True,
                    "get_with_cuts_s": 30.1,
                    "bytes_resent_total": 40 << 20,
                    "bytes_resent_per_cut": 2 << 20,
                },
                "check_300_versions": {
                    "versions": 300,
                    "junk": 50,
                    "runs": 3,
                    "latest_s": 0.8,
                    "from_middle_s": 1.3,
                    "latest_with_junk_s": 0.9,
                    "from_middle_with_junk_s": 1.4,
                },
            }
        )
    )
    assert soak_report.main(str(results), str(page)) == 0
    text = page.read_text()
    assert text.startswith("# Operations\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "Not yet measured" not in text
    assert "| a volume server SIGKILLed a third into a put | yes | 12.5 s |" in text
    assert "40 MiB re-sent in all, 2 MiB per cut" in text
    assert "| the S3 gateway restarted a fifth into a get | not run |" in text
    assert "| clean | 0.8 s | 1.3 s |" in text
    assert text.count(soak_report.BEGIN) == 1 and text.count(soak_report.END) == 1
    # A second run rewrites the section whole.
    assert soak_report.main(str(results), str(page)) == 0
    assert page.read_text().count("| clean | 0.8 s | 1.3 s |") == 1
