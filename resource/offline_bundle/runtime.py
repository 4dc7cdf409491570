"""What both entry points (the Concourse scripts and the CLI) do around the work: SIGTERM and exits.

Exit 1 is the user's or the environment's problem, told in one line; exit 2 is a bug in this
tool, the only case that mentions a traceback.
"""

from __future__ import annotations

import os
import signal
import threading
import traceback

from offline_bundle.core.log import Log
from offline_bundle.errors import BundleError, Terminated, path_error

EXIT_FAILURE = 1
EXIT_INTERNAL = 2


def install_sigterm_handler() -> None:
    """Turn SIGTERM into ``Terminated`` in the main thread; install first thing in an entry point.

    Without it SIGTERM ended the process on the spot: the GnuPG home with the decryption key, its
    agent and a staging folder of unverified plaintext all stayed. A second SIGTERM is ignored so
    that the cleanup it started is not cut short (a Python handler, not SIG_IGN, which children
    would inherit).
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def on_sigterm(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, lambda *_: None)
        raise Terminated()

    signal.signal(signal.SIGTERM, on_sigterm)


def failure_exit(e: BaseException, log: Log) -> int:
    """Report a failure as one line (a traceback only with OFFLINE_BUNDLE_DEBUG=1); the exit status."""
    if isinstance(e, BundleError):
        log(f"error: {e}")
        return EXIT_FAILURE
    if isinstance(e, KeyboardInterrupt):
        log("error: interrupted")
        return EXIT_FAILURE
    if isinstance(e, Terminated):
        log("error: terminated (SIGTERM); what this step had staged was removed")
        return EXIT_FAILURE
    if isinstance(e, OSError) and e.filename is not None:
        # A path no typed error covered yet: still the environment's (a full or read-only disk), not a bug.
        log(f"error: {path_error(e)}")
        return EXIT_FAILURE
    if os.environ.get("OFFLINE_BUNDLE_DEBUG"):
        log("".join(traceback.format_exception(e)))
    log(f"error: internal error ({e.__class__.__name__}: {e}); set OFFLINE_BUNDLE_DEBUG=1 for details")
    return EXIT_INTERNAL
