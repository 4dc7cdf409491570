"""``lint-pipeline`` on the command line: problems and placeholders listed, exit 1 when any."""

from __future__ import annotations

import argparse

from offline_bundle.cli.helptext import Subcommands, add_command
from offline_bundle.core.log import Log, Redactor
from offline_bundle.lint.pipeline import LintError, lint_paths


def cmd_lint(args: argparse.Namespace, log: Log, redact: Redactor) -> int:
    report = lint_paths(args.file, args.params)
    kind, doc = report.kind, report.doc
    for p in report.problems:
        print(f"{args.file}: {p}")
    for p in report.placeholders:
        print(p)  # located in its vars file already
    for n in report.notes:
        print(f"{args.file}: note: {n}")
    if report.problems or report.placeholders:
        why = [f"{len(report.problems)} that Concourse would refuse"] if report.problems else []
        why += [f"{len(report.placeholders)} placeholder(s) left in the vars files"] if report.placeholders else []
        total = len(report.problems) + len(report.placeholders)
        raise LintError(f"{args.file}: {total} problem(s): {'; '.join(why)}")
    if kind == "task":
        print(f"{args.file}: OK (task)")
    else:
        counts = ", ".join(
            f"{len(doc.get(k) or [])} {k.replace('_', ' ')}" for k in ("jobs", "resources", "resource_types")
        )
        checked = ""
        if args.params and report.notes:
            checked = f"; {len(report.notes)} ((var))(s) left to the credential manager"
        elif args.params:
            checked = "; every ((var)) is defined in the params"
        print(f"{args.file}: OK ({counts}{checked})")
    return 0


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    """Add ``lint-pipeline`` to the ``offline-bundle`` command line."""
    sp = add_command(
        sub,
        "lint-pipeline",
        "check a pipeline (or task) file the way set-pipeline would, and its vars files for placeholders",
        ["offline-bundle lint-pipeline pipelines/unpack-pcf-pipelines-combined.yml --params my-params.yml"],
        details=(
            "Exit status 1 when Concourse would refuse the pipeline or a vars file still holds a\n"
            "placeholder (CHANGEME, <...>, TODO, an all-zero digest). A ((var)) no vars file defines is\n"
            "a note: the credential manager must hold it."
        ),
    )
    sp.add_argument(
        "--params",
        action="append",
        metavar="FILE",
        help="a vars file the pipeline is set with (repeat for more, later ones win, as fly -l)",
    )
    sp.add_argument("file", metavar="FILE")
    sp.set_defaults(func=cmd_lint)
