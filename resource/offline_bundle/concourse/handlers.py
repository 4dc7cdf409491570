"""check, in and out: a parsed request, a store and a log in; Concourse's answer out.

The store comes from a factory so that the handlers run in unit tests over the shared fake S3
client, exactly as they run in a container over a real bucket (the way s3-resource tests its
commands); everything else is the same code the CLI runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from offline_bundle.bundle.approvals import approved_for_check
from offline_bundle.bundle.commit import verified_listing
from offline_bundle.bundle.pack import Packer
from offline_bundle.bundle.unpack import Unpacker
from offline_bundle.concourse.request import parse_check, parse_in, parse_out
from offline_bundle.core.config import BuildInfo, Source
from offline_bundle.core.log import Log
from offline_bundle.core.manifest import Manifest
from offline_bundle.core.versions import Committed
from offline_bundle.errors import ConfigError
from offline_bundle.storage.base import Store
from offline_bundle.storage.s3.store import S3Store

StoreFactory = Callable[[Source], Store]
Handler = Callable[[dict[str, Any], list[str], Log], Any]


def s3_store(source: Source) -> Store:
    return S3Store.from_source(source)


def metadata(pairs: list[tuple[str, Any]]) -> list[dict[str, str]]:
    return [{"name": k, "value": str(v)} for k, v in pairs if v is not None and v != ""]


def manifest_metadata(
    manifest: Manifest, signer: str | None, extra: list[tuple[str, Any]] | None = None
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


def handle_check(
    doc: dict[str, Any], argv: list[str], log: Log, stores: StoreFactory = s3_store
) -> list[dict[str, str]]:
    req = parse_check(doc)
    store = stores(req.source)
    if req.source.required_approvals:
        # Approvals are counted per version: every verified version is a candidate.
        every = verified_listing(req.source, store, log, untrusted_is_error=True).versions
        ordered = [Committed(t.manifest.version, t.manifest.created_at) for t in every]
        return [{"version": c.version} for c in approved_for_check(req.source, store, ordered, req.version, log)]
    found = verified_listing(req.source, store, log, current=req.version, newest=1, untrusted_is_error=True).versions
    return [{"version": t.manifest.version} for t in found]


def directory_arg(argv: list[str], what: str) -> str:
    if len(argv) != 1:
        raise ConfigError(f"usage: {what} <directory> (Concourse passes the {what} directory)")
    return argv[0]


def handle_in(doc: dict[str, Any], argv: list[str], log: Log, stores: StoreFactory = s3_store) -> dict[str, Any]:
    dest = directory_arg(argv, "in")
    req = parse_in(doc)
    result = Unpacker(req.source, stores(req.source), log).get(req.version, req.params, dest, record=True)
    m = result.trusted.manifest
    extra = [
        ("fetched_parts", ",".join(result.parts) if result.parts else "none (skip_download)"),
        ("signer_key_expired", "true" if result.trusted.signer_expired else None),
        ("approved_by", ",".join(result.approval.approvers) if result.approval else None),
    ]
    return {"version": {"version": m.version}, "metadata": manifest_metadata(m, result.trusted.signer, extra)}


def handle_out(doc: dict[str, Any], argv: list[str], log: Log, stores: StoreFactory = s3_store) -> dict[str, Any]:
    build_dir = directory_arg(argv, "out")
    req = parse_out(doc)
    build = BuildInfo.from_env(dict(os.environ))
    result = Packer(req.source, stores(req.source), log).put(req.params, build_dir, build)
    m = result.manifest
    recipients = sorted({r for p in m.parts for r in p.encryption.recipients})
    extra = [
        ("encrypted_to", ",".join(recipients) if recipients else None),
        ("passphrase", "yes" if any(p.encryption.passphrase for p in m.parts) else None),
        ("uploaded_parts", ",".join(result.uploaded) or "none"),
        ("reused_parts", ",".join(result.reused) or None),
    ]
    return {"version": {"version": m.version}, "metadata": manifest_metadata(m, result.signer, extra)}


HANDLERS: dict[str, Handler] = {"check": handle_check, "in": handle_in, "out": handle_out}
