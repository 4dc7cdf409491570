"""Version ordering and the Concourse check rule, as pure functions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offline_bundle.core.versions import Committed, order, select_for_check, semver_key
from offline_bundle.errors import ConfigError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def committed(*versions: str) -> list[Committed]:
    """Versions signed in the order given, one minute apart (their signed created_at)."""
    return [Committed(v, stamp(T0 + timedelta(minutes=i))) for i, v in enumerate(versions)]


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def names(cs: list[Committed]) -> list[str]:
    return [c.version for c in cs]


def test_semver_precedence_beats_string_order_and_creation_time() -> None:
    created = committed("1.10.0", "1.0.0", "1.9.0", "1.0.0-rc.1", "97.28.0", "97.9.0")
    assert names(order(created)) == ["1.0.0-rc.1", "1.0.0", "1.9.0", "1.10.0", "97.9.0", "97.28.0"]


def test_semver_prerelease_rules_of_the_spec() -> None:
    spec = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11"]
    spec += ["1.0.0-rc.1", "1.0.0"]
    shuffled = spec[:]
    random.Random(4).shuffle(shuffled)
    assert names(order(committed(*shuffled))) == spec


def test_dotted_numbers_and_v_prefix_are_numeric() -> None:
    assert names(order(committed("97.28", "v97.9", "97.3"))) == ["97.3", "v97.9", "97.28"]


def test_auto_falls_back_to_signed_creation_time_when_one_version_is_not_semver() -> None:
    created = committed("2.0.0", "20261125T213000Z", "1.0.0")
    assert names(order(created, "auto")) == ["2.0.0", "20261125T213000Z", "1.0.0"]


def test_semver_order_refuses_other_versions() -> None:
    with pytest.raises(ConfigError, match="not SemVer"):
        order(committed("1.0.0", "latest"), "semver")


def test_created_order_ignores_the_names_and_ties_by_name() -> None:
    assert names(order(committed("1.10.0", "1.9.0"), "created")) == ["1.10.0", "1.9.0"]
    same = [Committed(v, stamp(T0)) for v in ("b", "c", "a")]
    assert names(order(same, "created")) == ["a", "b", "c"]
    # a time zone offset is compared as a time, not as text
    zoned = [Committed("x", "2026-01-01T01:30:00+02:00"), Committed("y", "2026-01-01T00:00:00Z")]
    assert names(order(zoned, "created")) == ["x", "y"]


def test_an_unreadable_creation_time_never_sorts_newest() -> None:
    assert names(order([Committed("a", "garbage"), Committed("b", stamp(T0))], "created")) == ["a", "b"]


def test_semver_ties_are_broken_by_the_name() -> None:
    tie = [Committed("1.2.0", stamp(T0)), Committed("1.2", stamp(T0 + timedelta(1)))]
    assert names(order(tie)) == ["1.2", "1.2.0"]


def test_check_rule() -> None:
    ordered = order(committed("1.0.0", "1.1.0", "1.2.0"))
    assert names(select_for_check(ordered, None)) == ["1.2.0"]
    assert names(select_for_check(ordered, "1.1.0")) == ["1.1.0", "1.2.0"]
    assert names(select_for_check(ordered, "0.9.0")) == ["1.2.0"]  # gone: only the latest
    assert select_for_check([], None) == []


versions = st.builds(
    lambda a, b, c, pre: f"{a}.{b}.{c}" + (f"-{pre}" if pre else ""),
    st.integers(0, 30),
    st.integers(0, 30),
    st.integers(0, 30),
    st.one_of(st.none(), st.sampled_from(["alpha", "alpha.1", "beta.2", "beta.11", "rc.1", "1", "2a"])),
)


@given(st.lists(versions, min_size=1, max_size=15, unique=True))
def test_order_is_a_permutation_sorted_by_semver_key(vs: list[str]) -> None:
    result = names(order(committed(*vs)))
    assert sorted(result) == sorted(vs)
    keys = [semver_key(v) for v in result]
    assert keys == sorted(keys)  # type: ignore[type-var]


@given(st.lists(versions, min_size=1, max_size=10, unique=True), st.data())
def test_check_returns_a_suffix_ending_with_the_latest(vs: list[str], data: st.DataObject) -> None:
    ordered = order(committed(*vs))
    current = data.draw(st.one_of(st.none(), st.sampled_from(vs)))
    picked = select_for_check(ordered, current)
    assert picked[-1] == ordered[-1]
    if current is not None:
        assert picked[0].version == current
