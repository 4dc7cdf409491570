"""A resource script or CLI command running in the background, for tests that act while it works.

Output goes to files rather than pipes: a long transfer writes progress for minutes, and a pipe
nobody reads would block it. The test can read the stderr file at any time (to wait for a
progress line), signal the process, and collect a ``CompletedProcess`` at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .cli import cli_env
from .concourse import asset_env, record_output
from .paths import ASSETS_DIR, venv_bin


class Background:
    def __init__(self, argv: Sequence[str], stdin: bytes, env: Mapping[str, str], cwd: str | None = None) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="bg-"))
        self.stdout_path = self._dir / "stdout"
        self.stderr_path = self._dir / "stderr"
        (self._dir / "stdin").write_bytes(stdin)
        with (
            open(self._dir / "stdin", "rb") as i,
            open(self.stdout_path, "wb") as o,
            open(self.stderr_path, "wb") as e,
        ):
            self.proc = subprocess.Popen(list(argv), stdin=i, stdout=o, stderr=e, env=dict(env), cwd=cwd or self._dir)
        self.started = time.monotonic()

    @classmethod
    def asset(
        cls,
        name: str,
        request: Mapping[str, Any],
        arg: os.PathLike[str] | str | None = None,
        env: Mapping[str, str | None] | None = None,
    ) -> Background:
        argv = [str(ASSETS_DIR / name)] + ([os.fspath(arg)] if arg is not None else [])
        home = Path(tempfile.mkdtemp(prefix=f"bg-home-{name}-"))
        return cls(argv, json.dumps(request).encode(), asset_env(name, home=home, env=env))

    @classmethod
    def cli(cls, *args: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Background:
        argv = [str(venv_bin() / "offline-bundle"), *(os.fspath(a) for a in args)]
        return cls(argv, b"", cli_env(env))

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_until(self, condition: Callable[[], bool], timeout: float = 120.0, what: str = "condition") -> float:
        """Poll ``condition`` until it holds; fails if the process ends first. Returns the seconds waited."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if condition():
                return time.monotonic() - start
            if not self.running():
                raise AssertionError(f"process ended (exit {self.proc.returncode}) before {what}\n{self.stderr()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.stderr()[-3000:]}")

    def finish(self, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"{self.proc.args[0]} still running after {timeout:.0f} s\n{self.stderr()[-3000:]}"
            ) from None
        out = self.stdout_path.read_text(errors="replace")
        err = self.stderr()
        record_output(out, err)  # the suite-wide secrets audit reads every output
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started
