"""Version ordering (``version_order``), over verified versions only.

String sorting put ``97.9`` after ``97.28`` in the original pipelines; here SemVer precedence is
used when every version parses, and the signed ``created_at`` otherwise. Nothing else orders:
object times and metadata are the bucket writer's to set, and a carrier who controls them could
otherwise present an old version as the newest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from offline_bundle.errors import ConfigError

SEMVER_RE = re.compile(
    r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?\Z"
)
DOTTED_RE = re.compile(r"v?\d+(?:\.\d+)*\Z")


@dataclass(frozen=True)
class Committed:
    """A verified version and the ``created_at`` its signed manifest states."""

    version: str
    created_at: str


# A sort key: the numeric fields, then a flag that puts releases after their pre-releases, then the
# pre-release identifiers (numbers before words, as SemVer §11 says).
SemverKey = tuple[tuple[int, ...], int, tuple[tuple[int, int, str], ...]]
_Rank = TypeVar("_Rank", SemverKey, str)  # versions are ranked all by SemVer, or all as strings


def semver_key(version: str) -> SemverKey | None:
    """SemVer precedence key, also for plain dotted numbers (``1.2``, ``97.28``); None if neither."""
    m = SEMVER_RE.match(version)
    if m:
        numbers: tuple[int, ...] = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        pre = m.group(4)
    elif DOTTED_RE.match(version):
        numbers = tuple(int(x) for x in version.lstrip("v").split("."))
        pre = None
    else:
        return None
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers = numbers[:-1]  # 1.2 == 1.2.0 for precedence; the name breaks the tie
    if pre is None:
        return (numbers, 1, ())
    idents = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (numbers, 0, idents)


def created_key(c: Committed) -> tuple[datetime, str, str]:
    """Signed creation time, then the name; a time that does not parse sorts first (never newest)."""
    try:
        when = datetime.fromisoformat(c.created_at)
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    except ValueError:
        when = datetime.min.replace(tzinfo=UTC)
    return (when, c.created_at, c.version)


def order(versions: list[Committed], how: str = "auto") -> list[Committed]:
    """Oldest first, as Concourse wants ``check`` output; ``versions`` are all verified."""
    if how == "created":
        return sorted(versions, key=created_key)
    keys = {c.version: semver_key(c.version) for c in versions}
    unparsed = sorted(v for v, k in keys.items() if k is None)
    if unparsed:
        if how == "semver":
            raise ConfigError(
                f"version_order is semver but {len(unparsed)} version(s) are not SemVer, e.g. {unparsed[0]!r}"
            )
        return sorted(versions, key=created_key)
    return sorted(versions, key=lambda c: (keys[c.version], c.version))


def select_for_check(ordered: list[Committed], current: str | None) -> list[Committed]:
    """The Concourse check rule: the given version and what follows, else only the latest."""
    if not ordered:
        return []
    if current is not None:
        for i, c in enumerate(ordered):
            if c.version == current:
                return ordered[i:]
    return ordered[-1:]


def nearest(versions: list[str], missing: str) -> list[str]:
    """The committed versions just below and just above ``missing``, for an error that helps: a
    typo such as ``1.2.4`` for ``1.2.3`` is then obvious. SemVer precedence when all parse, else
    string order."""
    keys = {v: semver_key(v) for v in [*versions, missing]}
    semver = {v: k for v, k in keys.items() if k is not None}
    if len(semver) == len(keys):
        return _neighbours(versions, missing, semver)
    return _neighbours(versions, missing, {v: v for v in keys})


def _neighbours(versions: list[str], missing: str, rank: Mapping[str, _Rank]) -> list[str]:
    """The greatest of ``versions`` ranked below ``missing`` and the least ranked above it."""
    below = [v for v in versions if rank[v] < rank[missing]]
    above = [v for v in versions if rank[v] > rank[missing]]
    out = []
    if below:
        out.append(max(below, key=lambda v: rank[v]))
    if above:
        out.append(min(above, key=lambda v: rank[v]))
    return out
