"""Version ordering for ``check`` (SPEC §2 ``version_order``, §3).

String sorting put ``97.9`` after ``97.28`` in the original pipelines; here SemVer precedence is
used when every version parses, and the arrival time of the commit object otherwise, so that a
bundle carried late still triggers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .errors import ConfigError

SEMVER_RE = re.compile(
    r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?\Z"
)
DOTTED_RE = re.compile(r"v?\d+(?:\.\d+)*\Z")


@dataclass(frozen=True)
class Committed:
    """A committed version as the listing shows it.

    ``arrived`` is the store's time stamp, which S3 stores give to the second; ``arrived_ns`` is
    the writer's clock in nanoseconds kept with the commit object, read only to order versions
    whose time stamps are equal (an import or a mirror commits several in one second). 0 when
    unknown: such versions keep the version-string order among themselves.
    """

    version: str
    arrived: datetime
    arrived_ns: int = 0


# A sort key: the numeric fields, then a flag that puts releases after their pre-releases, then the
# pre-release identifiers (numbers before words, as SemVer §11 says).
SemverKey = tuple[tuple[int, ...], int, tuple[tuple[int, int, str], ...]]


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
        numbers = numbers[:-1]  # 1.2 == 1.2.0 for precedence; arrival breaks the tie
    if pre is None:
        return (numbers, 1, ())
    idents = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (numbers, 0, idents)


def order(versions: list[Committed], how: Literal["auto", "semver", "arrival"] | str = "auto") -> list[Committed]:
    """Oldest first, as Concourse wants ``check`` output."""
    by_arrival = sorted(versions, key=lambda c: (c.arrived, c.arrived_ns, c.version))
    if how == "arrival":
        return by_arrival
    keys = {c.version: semver_key(c.version) for c in versions}
    unparsed = sorted(v for v, k in keys.items() if k is None)
    if unparsed:
        if how == "semver":
            raise ConfigError(
                f"version_order is semver but {len(unparsed)} version(s) are not SemVer, e.g. {unparsed[0]!r}"
            )
        return by_arrival
    rank = {c.version: i for i, c in enumerate(by_arrival)}
    return sorted(versions, key=lambda c: (keys[c.version], rank[c.version]))


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
    if all(k is not None for k in keys.values()):
        rank: dict[str, object] = dict(keys)
    else:
        rank = {v: v for v in keys}
    below = [v for v in versions if rank[v] < rank[missing]]  # type: ignore[operator]
    above = [v for v in versions if rank[v] > rank[missing]]  # type: ignore[operator]
    out = []
    if below:
        out.append(max(below, key=lambda v: rank[v]))  # type: ignore[arg-type,return-value]
    if above:
        out.append(min(above, key=lambda v: rank[v]))  # type: ignore[arg-type,return-value]
    return out
