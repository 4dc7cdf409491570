"""How many parts run at once: the CPUs by default, at most four, or what the operator sets."""

from __future__ import annotations

import pytest

from offline_bundle.bundle import parallel
from offline_bundle.cli.common import load_config
from offline_bundle.errors import ConfigError


def test_the_default_is_one_part_per_cpu_at_most_four(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(parallel.PARALLEL_VARIABLE, raising=False)
    for cpus, expected in ((None, 1), (1, 1), (2, 2), (16, 4)):
        monkeypatch.setattr(parallel.os, "cpu_count", lambda c=cpus: c)
        assert parallel.default_parallel_parts() == expected


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("3", 3), ("12", 12), ("", 2)])
def test_the_variable_sets_it_and_empty_means_unset(monkeypatch: pytest.MonkeyPatch, raw: str, expected: int) -> None:
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)
    monkeypatch.setenv(parallel.PARALLEL_VARIABLE, raw)
    assert parallel.default_parallel_parts() == expected


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5", " 2"])
def test_a_value_that_is_no_count_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(parallel.PARALLEL_VARIABLE, raw)
    with pytest.raises(ConfigError, match="OFFLINE_BUNDLE_PARALLEL_PARTS must be a whole number of parts"):
        parallel.default_parallel_parts()


def test_the_cli_takes_the_variable_as_a_knob_not_as_an_unknown_source_key() -> None:
    env = {"OFFLINE_BUNDLE_PARALLEL_PARTS": "1", "OFFLINE_BUNDLE_BUCKET": "b"}
    assert load_config(None, env) == {"bucket": "b"}
    with pytest.raises(ConfigError, match="unknown variable OFFLINE_BUNDLE_PARALLEL_PART;"):
        load_config(None, {"OFFLINE_BUNDLE_PARALLEL_PART": "1"})
