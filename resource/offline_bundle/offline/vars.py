"""``((var))`` values for the fields pin must know, and credentials kept as references only.

pin needs some values a pipeline may leave to vars (an image's repository, a git branch); it resolves
those as ``fly set-pipeline -l`` would. Credentials are never resolved here: the lock keeps their
``((var))`` text, and fetch resolves it from its own vars on the connected side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from offline_bundle.core.log import Log
from offline_bundle.errors import ConfigError
from offline_bundle.lint.pipeline import VAR_RE, parse_var

CREDENTIAL_KEYS = ("private_key", "username", "password", "access_token", "api_token")


class Vars:
    """``((var))`` interpolation as ``fly set-pipeline -l`` does it, for the values pin must know.

    A value that is exactly one ``((var))`` becomes the var's value (a map or list too); a var inside
    a longer string is replaced by its text. Vars of a named var source (``((vault:x))``) and vars not
    given stay as they are; a field pin needs that still holds one is an error naming it.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = dict(values)

    def lookup(self, text: str) -> tuple[bool, Any]:
        ref = parse_var(text)
        if ref.source is not None or ref.name not in self.values:
            return False, None
        value = self.values[ref.name]
        for f in ref.fields:
            if not isinstance(value, dict) or f not in value:
                return False, None
            value = value[f]
        return True, value

    def resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            whole = VAR_RE.fullmatch(value.strip())
            if whole:
                found, got = self.lookup(whole.group(1))
                return self.resolve(got) if found else value

            def one(m: re.Match[str]) -> str:
                found, got = self.lookup(m.group(1))
                return str(got) if found and not isinstance(got, dict | list) else m.group(0)

            return VAR_RE.sub(one, value)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def with_values(self, more: Mapping[str, Any]) -> Vars:
        return Vars({**self.values, **more})


def needs(value: Any, what: str) -> str:
    """A field pin must know: a non-empty string without an unresolved ``((var))``."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string")
    if VAR_RE.search(value):
        raise ConfigError(f"{what} is {value!r}: give that var with --vars (pin must know it to lock it)")
    return value


def credential_refs(raw_source: Mapping[str, Any], where: str, log: Log) -> dict[str, str]:
    """Credential fields as their ``((var))`` text, never a value: the lock is written to disk and carried.

    fetch resolves them again from its own ``--vars``. A literal credential in a pipeline is left out
    with a warning (it would otherwise be copied into the lock).
    """
    out: dict[str, str] = {}
    for k in CREDENTIAL_KEYS:
        v = raw_source.get(k)
        if v is None:
            continue
        if isinstance(v, str) and VAR_RE.fullmatch(v.strip()):
            out[k] = v.strip()
        else:
            log(f"warning: {where}.source.{k} is a literal value; not copied into the lock (give it as a ((var)))")
    return out
