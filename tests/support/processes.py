"""The servers the tests start (SeaweedFS, its cluster's parts, the registry): how they die with the
test run, how they are stopped, and how their logs are shown when they fail."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
from pathlib import Path


def die_with_parent() -> None:
    """preexec_fn: SIGTERM the server if the pytest process dies.

    Without this a crashed or SIGKILLed test run leaves the server holding its ports and data
    folder until the machine is recycled.
    """
    with contextlib.suppress(Exception):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM (a clean shutdown), SIGKILL if it is still running after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
