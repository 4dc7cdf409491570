"""``--help``: every command says what it does in one line and shows an example that parses.

A newcomer on the air-gapped side has the help text and little else; so each subcommand has a
description and an ``example:`` epilog, repeatable options say so, the top-level help lists every
command with its line, and every example is a command line the parser accepts (an example with a
misspelt option would teach the mistake).
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess

import pytest

from offline_bundle.cli.main import build_parser
from tests.support.paths import venv_bin


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def summaries() -> dict[str, str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {a.dest: a.help or "" for a in sub._choices_actions}


def examples(epilog: str) -> list[str]:
    """The command lines of an ``example:`` epilog (continuation lines joined, comments dropped)."""
    body = epilog.split("example:\n", 1)[1].split("\n\n", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", body)
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


COMMANDS = sorted(subcommands())


def test_the_command_set_is_what_this_test_walks() -> None:
    assert len(COMMANDS) >= 19 and {"pack", "publish", "export", "import", "lint-pipeline", "in"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_a_description_and_an_example_that_parses(name: str) -> None:
    sp = subcommands()[name]
    summary = summaries()[name]
    assert summary and "\n" not in summary
    assert sp.description and sp.description.splitlines()[0].rstrip(".").lower() == summary.lower()
    assert sp.epilog and sp.epilog.startswith("example:\n"), sp.epilog
    text = sp.format_help()
    assert "example:\n  " in text and sp.description.splitlines()[0] in text
    found = examples(sp.epilog)
    assert found and all(line.startswith(f"offline-bundle {name} ") for line in found), found
    for line in found:
        argv = shlex.split(line.split(" < ")[0], comments=True)[1:]
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"the example does not parse: {line}")


@pytest.mark.parametrize("name", COMMANDS)
def test_repeatable_options_say_so(name: str) -> None:
    for action in subcommands()[name]._actions:
        if isinstance(action, argparse._AppendAction):
            assert action.help and "repeat" in action.help, f"{name} {action.option_strings[0]}: {action.help}"


def test_the_top_level_help_lists_every_command_with_its_line() -> None:
    proc = subprocess.run(
        [str(venv_bin() / "offline-bundle"), "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0
    flat = " ".join(proc.stdout.split())
    for name, summary in summaries().items():
        assert f"{name} {' '.join(summary.split())}" in flat, name
    assert "offline-bundle COMMAND --help" in flat and "example:" in proc.stdout


def test_publish_names_its_target_plainly_and_keeps_config_working() -> None:
    help_text = " ".join(subcommands()["publish"].format_help().split())
    assert "--target TARGET.yml" in help_text and "the TARGET store's config, not the bundle's" in help_text
    parser = build_parser()
    by_target = parser.parse_args(["publish", "--target", "products.yml", "exploded"])
    by_config = parser.parse_args(["publish", "--config", "products.yml", "exploded"])
    assert by_target.config == by_config.config == "products.yml"


@pytest.mark.parametrize("name", ["export", "import", "mirror", "unpack", "publish"])
def test_the_commands_that_write_records_take_verbose(name: str) -> None:
    sp = subcommands()[name]
    assert {"-v", "--verbose"} <= {o for a in sp._actions for o in a.option_strings}
