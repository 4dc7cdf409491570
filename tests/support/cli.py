"""Run the ``offline-bundle`` command line as an operator (or a task script) would.

Like ``run_asset``, the environment is built from scratch (no AWS_*, no GNUPGHOME, no developer
HOME leaking in), and every output is recorded for the suite-wide secrets audit.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .concourse import record_output
from .paths import venv_bin

_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cli_env(extra: Mapping[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    env = {"PATH": f"{venv_bin()}:{_SYSTEM_PATH}", "LANG": "C.UTF-8", "HOME": str(home or tempfile.gettempdir())}
    env.update(extra or {})
    return env


def source_env(source: Mapping[str, Any]) -> dict[str, str]:
    """A source as the CLI's OFFLINE_BUNDLE_<KEY> variables (lists one item a line, booleans as words)."""
    out = {}
    for k, v in source.items():
        if isinstance(v, list):
            v = "\n".join(v)
        elif isinstance(v, bool):
            v = "true" if v else "false"
        out[f"OFFLINE_BUNDLE_{k.upper()}"] = v
    return out


def run_cli(
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(venv_bin() / "offline-bundle"), *(os.fspath(a) for a in args)],
        capture_output=True,
        text=True,
        env=cli_env(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    record_output(proc.stdout, proc.stderr)
    return proc


def write_yaml(path: Path, doc: Any) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Assert success, showing both streams otherwise."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    return proc
