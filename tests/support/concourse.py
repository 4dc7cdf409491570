"""Run the resource's assets (check/in/out) the way Concourse runs them.

Concourse's contract is narrow and easy to get subtly wrong: the request is a
JSON document on stdin, the only argument is a directory (none for check),
stdout must carry exactly one JSON document and everything human goes to
stderr, and build metadata arrives as environment variables for in/out only.
These helpers reproduce that contract so tests catch e.g. a stray print() on
stdout or a dependency on the caller's environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from .paths import ASSETS_DIR, venv_bin
from .seaweed import REGION, SeaweedServer

# What a pipeline build exports to get/put steps (values are arbitrary but stable).
BUILD_METADATA: dict[str, str] = {
    "BUILD_ID": "4242",
    "BUILD_NAME": "17",
    "BUILD_JOB_NAME": "publish-bundle",
    "BUILD_PIPELINE_NAME": "offline-bundle-test",
    "BUILD_TEAM_NAME": "main",
    "ATC_EXTERNAL_URL": "https://ci.example.invalid",
}
# Absent in one-off builds (`fly execute`), per Concourse's resource docs.
PIPELINE_ONLY_METADATA = ("BUILD_NAME", "BUILD_JOB_NAME", "BUILD_PIPELINE_NAME")

DEFAULT_TIMEOUT = 180.0
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def asset_env(
    name: str,
    *,
    one_off: bool = False,
    home: Path | None = None,
    env: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """The environment a resource container would have for asset ``name``.

    Deliberately built from scratch rather than copied from the test process,
    so an asset that silently relies on AWS_*, GNUPGHOME or the developer's
    HOME fails here as it would in a container.  ``env`` entries are applied
    last; a value of ``None`` removes the variable.
    """
    result: dict[str, str] = {
        "PATH": f"{venv_bin()}:{_SYSTEM_PATH}",
        "LANG": "C.UTF-8",
    }
    if home is not None:
        result["HOME"] = str(home)
    if name in ("in", "out"):
        result.update(BUILD_METADATA)
        if one_off:
            for var in PIPELINE_ONLY_METADATA:
                result.pop(var, None)
    for key, value in (env or {}).items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def run_asset(
    name: str,
    request: Mapping[str, Any] | str | bytes,
    *args: str | os.PathLike[str],
    env: Mapping[str, str | None] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    one_off: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``assets/<name>`` with ``request`` on stdin and ``args`` as argv.

    ``name`` may also be an absolute path (a stand-in script); its basename
    then decides which BUILD_* variables it gets.

    ``request`` may be a str/bytes to send malformed input verbatim.
    ``one_off=True`` omits the pipeline-only BUILD_* variables as
    ``fly execute`` does.  HOME (and the default cwd) is a fresh empty
    directory per call, like a new container.  Does not check the exit code:
    use ``parse_stdout`` for the success path.
    """
    asset = Path(name) if os.path.isabs(name) else ASSETS_DIR / name
    if not asset.exists():
        pytest.fail(f"asset {asset} does not exist")
    if not os.access(asset, os.X_OK):
        pytest.fail(f"asset {asset} is not executable (Concourse execs it directly)")
    if isinstance(request, bytes):
        stdin = request
    elif isinstance(request, str):
        stdin = request.encode()
    else:
        stdin = json.dumps(request).encode()

    scratch = Path(tempfile.mkdtemp(prefix=f"asset-{asset.name}-"))
    try:
        full_env = asset_env(asset.name, one_off=one_off, home=scratch, env=env)
        argv = [str(asset), *(os.fspath(a) for a in args)]
        try:
            proc = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                env=full_env,
                cwd=os.fspath(cwd) if cwd is not None else scratch,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"{name} timed out after {timeout}s\n"
                f"--- stdout ---\n{_text(exc.stdout)}\n--- stderr ---\n{_text(exc.stderr)}"
            )
        result = subprocess.CompletedProcess(
            args=argv,
            returncode=proc.returncode,
            stdout=_text(proc.stdout),
            stderr=_text(proc.stderr),
        )
        if asset.parent == ASSETS_DIR:  # the product's own scripts; stand-ins may echo their request on purpose
            record_output(result.stdout, result.stderr)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# Every stdout and stderr the suite's script and CLI runs produced, for the secrets audit that runs last.
RECORDED_OUTPUTS: list[str] = []


def record_output(*texts: str) -> None:
    RECORDED_OUTPUTS.extend(t for t in texts if t)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


def parse_stdout(proc: subprocess.CompletedProcess[str], *, check_returncode: bool = True) -> Any:
    """Assert stdout is exactly one JSON document (Concourse's rule) and return it.

    Anything else on stdout - a log line, a second document - breaks
    Concourse's parsing, so it is a test failure even when the JSON is fine.
    """
    context = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    if check_returncode:
        assert proc.returncode == 0, f"{proc.args[0]} exited {proc.returncode}\n{context}"
    text = proc.stdout.strip()
    assert text, f"stdout is empty\n{context}"
    try:
        value, end = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"stdout is not JSON ({exc})\n{context}") from None
    assert not text[end:].strip(), f"stdout has data after the JSON document\n{context}"
    return value


def make_source(
    server: SeaweedServer,
    bucket: str,
    *,
    use_readonly_identity: bool = False,
    use_writer_identity: bool = False,
    drop: Iterable[str] = (),
    **overrides: Any,
) -> dict[str, Any]:
    """A Concourse ``source`` pointing at the test SeaweedFS bucket.

    ``overrides`` replace or add keys; ``drop`` removes keys (to test missing
    required fields).  ``use_readonly_identity`` swaps in the read-only
    credentials, e.g. for check/get-only pipelines.
    """
    access_key, secret_key = server.credentials(readonly=use_readonly_identity, writer=use_writer_identity)
    source: dict[str, Any] = {
        "bucket": bucket,
        "name": "demo",
        "endpoint": server.endpoint,
        "access_key_id": access_key,
        "secret_access_key": secret_key,
        "region_name": REGION,
    }
    source.update(overrides)
    for key in drop:
        source.pop(key, None)
    return source
