"""The Concourse resource protocol: ``assets/check|in|out`` call :func:`main`.

Concourse reads stdout as the one JSON answer, so while work runs stdout is pointed at stderr
(file descriptor 1 included, for gpg and any other child) and the answer is written to the saved
descriptor at the end. Every failure ends as one line on stderr and a non-zero exit, never a
traceback, and no line carries a secret value.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import TextIO

from offline_bundle.concourse.handlers import HANDLERS, Handler
from offline_bundle.concourse.request import load_request, secrets_in_request
from offline_bundle.core.log import Redactor, stderr_log
from offline_bundle.errors import Terminated
from offline_bundle.runtime import failure_exit, install_sigterm_handler


@contextlib.contextmanager
def protected_stdout() -> Iterator[TextIO]:
    """Yield the real stdout while fd 1 and sys.stdout point at stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(saved, "w", encoding="utf-8")
    old = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield real
    finally:
        sys.stdout = old
        real.flush()
        os.dup2(saved, 1)
        real.close()


def run_protocol(handler: Handler, argv: list[str]) -> int:
    """Read the request, run ``handler`` with stdout protected, print its answer as JSON."""
    install_sigterm_handler()
    redact = Redactor()
    log = stderr_log(redact)
    with protected_stdout() as out:
        try:
            doc = load_request(sys.stdin.read())
            redact.add(secrets_in_request(doc))
            answer = handler(doc, argv, log)
        except (Exception, KeyboardInterrupt, Terminated) as e:  # noqa: BLE001 - one line, never a traceback
            return failure_exit(e, log)
        json.dump(answer, out)
        out.write("\n")
    return 0


def main(command: str, argv: list[str] | None = None) -> int:
    return run_protocol(HANDLERS[command], list(sys.argv[1:] if argv is None else argv))
