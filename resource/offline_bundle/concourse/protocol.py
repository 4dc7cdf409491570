"""The Concourse resource protocol: request parsing as pure functions, and the three entry points.

Concourse reads stdout as the one JSON answer, so while work runs stdout is pointed at stderr
(file descriptor 1 included, for gpg and any other child) and the answer is written to the saved
descriptor at the end. Every failure ends as one line on stderr and a non-zero exit, never a
traceback, and no line carries a secret value.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from offline_bundle.core.config import (
    BuildInfo,
    InParams,
    OutParams,
    Source,
    parse_in_params,
    parse_out_params,
    parse_source,
)
from offline_bundle.core.names import check_name
from offline_bundle.errors import BundleError, ConfigError, Terminated, path_error

EXIT_FAILURE = 1
EXIT_INTERNAL = 2


@dataclass(frozen=True)
class CheckRequest:
    source: Source
    version: str | None


@dataclass(frozen=True)
class InRequest:
    source: Source
    version: str
    params: InParams


@dataclass(frozen=True)
class OutRequest:
    source: Source
    params: OutParams


def load_request(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"the request on stdin is not JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(doc, dict):
        raise ConfigError("the request on stdin must be a JSON object")
    return doc


def parse_version(raw: Any, *, required: bool) -> str | None:
    if raw is None:
        if required:
            raise ConfigError("the request has no version")
        return None
    if not isinstance(raw, dict) or set(raw) != {"version"}:
        raise ConfigError('version must be an object {"version": "<string>"}')
    return check_name(raw["version"], "version")


def parse_check(doc: dict[str, Any]) -> CheckRequest:
    return CheckRequest(parse_source(doc.get("source")), parse_version(doc.get("version"), required=False))


def parse_in(doc: dict[str, Any]) -> InRequest:
    version = parse_version(doc.get("version"), required=True)
    assert version is not None
    return InRequest(parse_source(doc.get("source")), version, parse_in_params(doc.get("params")))


def parse_out(doc: dict[str, Any]) -> OutRequest:
    return OutRequest(parse_source(doc.get("source")), parse_out_params(doc.get("params")))


# ------------------------------------------------------------------------------------------ secrets


class Redactor:
    """Replaces every known secret value (and each of its lines, for armoured keys) with ***."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, values: list[str]) -> None:
        for v in values:
            for piece in [v, *v.splitlines()]:
                piece = piece.strip()
                if len(piece) >= 4 and not piece.startswith("-----") and piece not in self._secrets:
                    self._secrets.append(piece)
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text


def secrets_in_request(doc: Any) -> list[str]:
    """Secret-looking values in a raw request, found before parsing so that errors are redacted too."""
    from offline_bundle.core.config import SECRET_KEYS

    out: list[str] = []
    source = doc.get("source") if isinstance(doc, dict) else None
    if isinstance(source, dict):
        for k, v in source.items():
            if k in SECRET_KEYS and isinstance(v, str):
                out.append(v)
    return out


# -------------------------------------------------------------------------------------------- runner


@contextlib.contextmanager
def protected_stdout() -> Iterator[TextIO]:
    """Yield the real stdout while fd 1 and sys.stdout point at stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(saved, "w", encoding="utf-8")
    old = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield real
    finally:
        sys.stdout = old
        real.flush()
        os.dup2(saved, 1)
        real.close()


def install_sigterm_handler() -> None:
    """Turn SIGTERM into ``Terminated`` in the main thread; install first thing in an entry point.

    Without it SIGTERM ended the process on the spot: the GnuPG home with the decryption key, its
    agent and a staging folder of unverified plaintext all stayed. A second SIGTERM is ignored so
    that the cleanup it started is not cut short (a Python handler, not SIG_IGN, which children
    would inherit).
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def on_sigterm(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, lambda *_: None)
        raise Terminated()

    signal.signal(signal.SIGTERM, on_sigterm)


def failure_exit(e: BaseException, log: Callable[[str], None]) -> int:
    """Report a failure as one line (a traceback only with OFFLINE_BUNDLE_DEBUG=1); the exit status."""
    if isinstance(e, BundleError):
        log(f"error: {e}")
        return EXIT_FAILURE
    if isinstance(e, KeyboardInterrupt):
        log("error: interrupted")
        return EXIT_FAILURE
    if isinstance(e, Terminated):
        log("error: terminated (SIGTERM); what this step had staged was removed")
        return EXIT_FAILURE
    if isinstance(e, OSError) and e.filename is not None:
        # A path no typed error covered yet: still the environment's (a full or read-only disk), not a bug.
        log(f"error: {path_error(e)}")
        return EXIT_FAILURE
    if os.environ.get("OFFLINE_BUNDLE_DEBUG"):
        import traceback

        log("".join(traceback.format_exception(e)))
    log(f"error: internal error ({e.__class__.__name__}: {e}); set OFFLINE_BUNDLE_DEBUG=1 for details")
    return EXIT_INTERNAL


def run_protocol(handler: Callable[[dict[str, Any], list[str], Callable[[str], None]], Any], argv: list[str]) -> int:
    """Read the request, run ``handler`` with stdout protected, print its answer as JSON."""
    install_sigterm_handler()
    redact = Redactor()

    def log(msg: str) -> None:
        sys.stderr.write(redact(msg) + "\n")
        sys.stderr.flush()

    with protected_stdout() as out:
        try:
            doc = load_request(sys.stdin.read())
            redact.add(secrets_in_request(doc))
            answer = handler(doc, argv, log)
        except (Exception, KeyboardInterrupt, Terminated) as e:  # noqa: BLE001 - one line, never a traceback
            return failure_exit(e, log)
        json.dump(answer, out)
        out.write("\n")
    return 0


def metadata(pairs: list[tuple[str, Any]]) -> list[dict[str, str]]:
    return [{"name": k, "value": str(v)} for k, v in pairs if v is not None and v != ""]


def manifest_metadata(
    manifest: Any, signer: str | None, extra: list[tuple[str, Any]] | None = None
) -> list[dict[str, str]]:
    created_by = BuildInfo(manifest.created_by or {}).describe()
    return metadata(
        [
            ("name", manifest.name),
            ("version", manifest.version),
            ("parts", ",".join(p.name for p in manifest.parts)),
            ("files", sum(1 for p in manifest.parts for f in p.files if f.type == "file")),
            ("bytes", manifest.total_bytes),
            ("signer", signer or "unsigned"),
            ("created_at", manifest.created_at),
            ("created_by", created_by),
            *(extra or []),
        ]
    )


# ---------------------------------------------------------------------------------------- handlers


def handle_check(doc: dict[str, Any], argv: list[str], log: Callable[[str], None]) -> list[dict[str, str]]:
    from offline_bundle.bundle.commit import committed_versions
    from offline_bundle.storage.store import S3Store

    req = parse_check(doc)
    store = S3Store(req.source)
    if req.source.required_approvals:
        from offline_bundle.bundle.approvals import approved_for_check
        from offline_bundle.core.versions import Committed

        # Approvals are counted per version: every verified version is a candidate.
        every = committed_versions(req.source, store, log, untrusted_is_error=True)
        ordered = [Committed(t.manifest.version, t.manifest.created_at) for t in every]
        return [{"version": c.version} for c in approved_for_check(req.source, store, ordered, req.version, log)]
    found = committed_versions(req.source, store, log, current=req.version, newest=1, untrusted_is_error=True)
    return [{"version": t.manifest.version} for t in found]


def _directory_arg(argv: list[str], what: str) -> str:
    if len(argv) != 1:
        raise ConfigError(f"usage: {what} <directory> (Concourse passes the {what} directory)")
    return argv[0]


def handle_in(doc: dict[str, Any], argv: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    from offline_bundle.bundle.unpack import Unpacker
    from offline_bundle.storage.store import S3Store

    dest = _directory_arg(argv, "in")
    req = parse_in(doc)
    result = Unpacker(req.source, S3Store(req.source), log).get(req.version, req.params, dest, record=True)
    m = result.trusted.manifest
    extra = [
        ("fetched_parts", ",".join(result.parts) if result.parts else "none (skip_download)"),
        ("signer_key_expired", "true" if result.trusted.signer_expired else None),
        ("approved_by", ",".join(result.approval.approvers) if result.approval else None),
    ]
    return {"version": {"version": m.version}, "metadata": manifest_metadata(m, result.trusted.signer, extra)}


def handle_out(doc: dict[str, Any], argv: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    from offline_bundle.bundle.pack import Packer
    from offline_bundle.storage.store import S3Store

    build_dir = _directory_arg(argv, "out")
    req = parse_out(doc)
    build = BuildInfo.from_env(dict(os.environ))
    result = Packer(req.source, S3Store(req.source), log).put(req.params, build_dir, build)
    m = result.manifest
    recipients = sorted({r for p in m.parts for r in p.encryption.recipients})
    extra = [
        ("encrypted_to", ",".join(recipients) if recipients else None),
        ("passphrase", "yes" if any(p.encryption.passphrase for p in m.parts) else None),
        ("uploaded_parts", ",".join(result.uploaded) or "none"),
        ("reused_parts", ",".join(result.reused) or None),
    ]
    return {"version": {"version": m.version}, "metadata": manifest_metadata(m, result.signer, extra)}


HANDLERS = {"check": handle_check, "in": handle_in, "out": handle_out}


def main(command: str, argv: list[str] | None = None) -> int:
    return run_protocol(HANDLERS[command], list(sys.argv[1:] if argv is None else argv))
