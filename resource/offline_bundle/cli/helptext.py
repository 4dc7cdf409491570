"""``--help`` for every command: what it does in one line, the details that matter, an example.

Operators meet this tool on the air-gapped side, often without the README at hand; the help text
is what they have. Each command is registered through ``add_command`` so none can lack a
description or an example (a test walks them all).
"""

from __future__ import annotations

import argparse

Subcommands = argparse._SubParsersAction  # argparse's own name for what add_subparsers returns


def add_command(
    sub: Subcommands[argparse.ArgumentParser], name: str, summary: str, examples: list[str], *, details: str = ""
) -> argparse.ArgumentParser:
    """A subcommand: ``summary`` is its line in ``offline-bundle --help`` and opens its own ``--help``
    (``details``, already wrapped, follow); ``examples`` close it, one command line each (a line
    starting with ``#`` is a comment for the next)."""
    description = summary[:1].upper() + summary[1:] + "."
    if details:
        description += "\n\n" + details.strip("\n")
    return sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog="example:\n" + "\n".join(f"  {line}" for line in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_verbose(sp: argparse.ArgumentParser) -> None:
    """For the commands that write a transfer record: its summary line always, the JSON on request."""
    sp.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="after each transfer record's summary line on stderr, print the record itself (JSON)",
    )


def with_config(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file of source keys (OFFLINE_BUNDLE_<KEY> variables override)",
    )


def with_from_dir(
    sp: argparse.ArgumentParser, text: str = "read the bundle from a local folder in the bucket layout"
) -> None:
    """``--from-dir DIR``: a folder (a medium) in the bucket layout instead of the configured store."""
    sp.add_argument("--from-dir", metavar="DIR", help=text)


def with_version(sp: argparse.ArgumentParser, text: str = "bundle version (default: the latest)") -> None:
    """``--version V``: the one version a command works on, or the versions it is limited to."""
    sp.add_argument("--version", dest="version", metavar="V", help=text)


def with_part(sp: argparse.ArgumentParser, verb: str) -> None:
    """``--part NAME``, repeatable: the commands that can ``verb`` some parts of a bundle only."""
    sp.add_argument("--part", action="append", metavar="NAME", help=f"{verb} only this part (repeat for more)")


def with_store(sp: argparse.ArgumentParser, from_dir: str = "a local folder in the bucket layout") -> None:
    """The options of a command that works on a bundle's store as a whole: its config, or a folder instead."""
    with_config(sp)
    with_from_dir(sp, from_dir)


def with_read(sp: argparse.ArgumentParser) -> None:
    """The options of every command that reads a bundle: its store, a folder instead, a version."""
    with_config(sp)
    with_from_dir(sp)
    with_version(sp)
