"""The ``offline-bundle`` command line (docs/reference.md): one parser, one module per command group.

Operators run it on both sides of the gap; its commands are thin wrappers over the same Packer
and Unpacker that the Concourse scripts use, with a local folder as an alternative store. Nothing
else in the package imports ``cli``: it sits on top of everything.
"""

from __future__ import annotations

import argparse
import sys

from offline_bundle import __version__
from offline_bundle.bundle.records import print_record_json
from offline_bundle.cli import approval, bundle, keys, lint, pin, publish, transfer
from offline_bundle.cli.helptext import Subcommands, add_command
from offline_bundle.concourse.protocol import main as protocol_main
from offline_bundle.core.log import Redactor, stderr_log
from offline_bundle.errors import Terminated
from offline_bundle.runtime import failure_exit, install_sigterm_handler


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="offline-bundle",
        description="Signed, encrypted bundles across an air gap through S3-compatible stores.",
        epilog=(
            "example:\n"
            "  offline-bundle pack --config connected.yml --part tiles='tiles/*.pivotal' --version 1.0.0\n"
            "  offline-bundle export --config connected.yml --to /media/usb\n"
            "  offline-bundle import --config airgapped.yml --from /media/usb\n\n"
            "Every command has its own help: offline-bundle COMMAND --help"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"offline-bundle {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (bundle, keys, transfer, approval, publish, lint, pin):
        group.register(sub)
    register_protocol(sub)
    return p


def register_protocol(sub: Subcommands[argparse.ArgumentParser]) -> None:
    """``check``, ``in`` and ``out``: the Concourse scripts, for running them by hand."""
    for name, what, example in (
        ("check", "list versions", "offline-bundle check < request.json"),
        ("in", "fetch a version into DIR", "offline-bundle in ./dest < request.json"),
        ("out", "put from DIR", "offline-bundle out ./build < request.json"),
    ):
        sp = add_command(
            sub,
            name,
            f"the Concourse {name} script ({what}); request JSON on stdin",
            [example],
            details='The request is what Concourse sends: {"source": {...}, "version": ..., "params": {...}}.',
        )
        sp.add_argument("directory", nargs="*")
        sp.set_defaults(func=None, protocol=name)


def main(argv: list[str] | None = None) -> int:
    install_sigterm_handler()
    args = build_parser().parse_args(argv)
    if args.func is None:
        return protocol_main(args.protocol, args.directory)
    print_record_json(bool(getattr(args, "verbose", False)))
    redact = Redactor()
    log = stderr_log(redact)
    try:
        return int(args.func(args, log, redact))
    except (Exception, KeyboardInterrupt, Terminated) as e:  # noqa: BLE001 - one line, never a traceback
        return failure_exit(e, log)


if __name__ == "__main__":
    sys.exit(main())
