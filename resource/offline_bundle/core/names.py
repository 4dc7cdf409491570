"""The naming rule (docs/reference.md), shared by bundle names, part names and versions.

Names become S3 key segments and directory names on the far side, so the rule keeps them to one
path segment that cannot climb out (no ``/``, no ``..``) and cannot shadow the files written
beside the parts.
"""

from __future__ import annotations

import re
from typing import TypeGuard

from offline_bundle.errors import ConfigError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
MAX_NAME_LENGTH = 200
RESERVED_PART_NAMES = frozenset({"SHA256SUMS", "manifest.json", "manifest.json.asc", "version"})
_RESERVED_FOLDED = frozenset(n.casefold() for n in RESERVED_PART_NAMES)


def is_reserved_part_name(name: str) -> bool:
    """In any case: on a case-insensitive destination (macOS, FAT, exFAT) part ``Version`` is the
    ``version`` file."""
    return name.casefold() in _RESERVED_FOLDED


def is_valid_name(value: object) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and len(value) <= MAX_NAME_LENGTH
        and NAME_RE.match(value) is not None
        and ".." not in value
    )


def check_name(value: object, what: str) -> str:
    """Return ``value`` if it obeys the rule, else raise naming ``what``."""
    if is_valid_name(value):
        return value
    raise ConfigError(
        f"{what} {value!r} is not valid: it must match [A-Za-z0-9][A-Za-z0-9._+-]*, "
        f"contain no '..' and be at most {MAX_NAME_LENGTH} characters"
    )


def check_part_name(value: object) -> str:
    name = check_name(value, "part name")
    if is_reserved_part_name(name):
        raise ConfigError(f"part name {name!r} is reserved (it is a file written beside the parts)")
    return name
