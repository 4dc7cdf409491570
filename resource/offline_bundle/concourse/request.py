"""Concourse requests as pure functions: JSON text in, typed requests out, nothing touched.

Kept apart from the handlers so that every rule about what a request may hold (an absent version,
``""`` meaning absent, unknown keys refused) is tested without a store, gpg or a process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from offline_bundle.core.config import (
    SECRET_KEYS,
    InParams,
    OutParams,
    Source,
    parse_in_params,
    parse_out_params,
    parse_source,
)
from offline_bundle.core.names import check_name
from offline_bundle.errors import ConfigError


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
    if version is None:  # parse_version raised already; this says so to the type checker
        raise ConfigError("the request has no version")
    return InRequest(parse_source(doc.get("source")), version, parse_in_params(doc.get("params")))


def parse_out(doc: dict[str, Any]) -> OutRequest:
    return OutRequest(parse_source(doc.get("source")), parse_out_params(doc.get("params")))


def secrets_in_request(doc: Any) -> list[str]:
    """Secret-looking values in a raw request, found before parsing so that errors are redacted too."""
    out: list[str] = []
    source = doc.get("source") if isinstance(doc, dict) else None
    if isinstance(source, dict):
        for k, v in source.items():
            if k in SECRET_KEYS and isinstance(v, str):
                out.append(v)
    return out
