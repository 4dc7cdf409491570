"""Several parts of a bundle at once, one thread (and one gpg) each; the first failure stops them all.

A part's put or get runs through one gpg process, which uses one core; a bundle of several large
parts on a machine with more cores waits on one gpg at a time unless parts run side by side. How
many run is bounded by the CPUs (at most four), by the parts there are, and by what the caller's
memory budget allows.

When one part fails, every other part is told to stop at its next chunk, and all of them are
waited for before the failure is raised: each part's own cleanup (an aborted upload, an ended gpg
process) has happened by the time the caller cleans up after the whole step (staging folder, the
payload objects a failed put wrote). The error raised is the first part's, never the stops it
caused.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

from offline_bundle.errors import BundleError, ConfigError

T = TypeVar("T")
MAX_PARALLEL_PARTS = 4
PARALLEL_VARIABLE = "OFFLINE_BUNDLE_PARALLEL_PARTS"


def default_parallel_parts() -> int:
    """One part per CPU, at most four: more gpg processes than cores only take turns.

    ``OFFLINE_BUNDLE_PARALLEL_PARTS`` overrides it (an operational knob, like the retry count: a
    worker shared with other jobs may want one part at a time, a large one more than four); the
    memory budget still bounds it. Empty means unset, as an unset ``((var))`` arrives.
    """
    raw = os.environ.get(PARALLEL_VARIABLE, "")
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"{PARALLEL_VARIABLE} must be a whole number of parts, at least 1 (got {raw!r})")
        return int(raw)
    return max(1, min(os.cpu_count() or 1, MAX_PARALLEL_PARTS))


class PartsStopped(BundleError):
    """A part stopped because another part failed; the other part's error is the one reported."""


class Ticket:
    """One part's place in its group: how it learns that it must stop, and how it says that it fails."""

    def __init__(self, group: PartGroup) -> None:
        self._group = group

    def check(self) -> None:
        """Raise PartsStopped once the group has stopped: called between chunks."""
        if self._group.stopped:
            raise PartsStopped("stopped because another part failed")

    def on_stop(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` when another part stops the group (at once if one has); returns what unregisters it."""
        return self._group.on_stop(self, listener)

    def fail(self) -> None:
        """This part fails: the others stop now, before this part's own cleanup or diagnosis has run."""
        self._group.stop(self)


class PartGroup:
    """Runs one job per part on at most ``workers`` threads and stops them all at the first failure."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._lock = threading.Lock()
        self._stopped = False
        self._origin: Ticket | None = None  # the part that failed first; None for a signal
        self._cause: BaseException | None = None
        self._listeners: list[tuple[Ticket, Callable[[], None]]] = []

    @property
    def stopped(self) -> bool:
        return self._stopped

    def on_stop(self, ticket: Ticket, listener: Callable[[], None]) -> Callable[[], None]:
        entry = (ticket, listener)
        with self._lock:
            if not self._stopped:
                self._listeners.append(entry)
                return lambda: self._forget(entry)
            tell = self._origin is not ticket
        if tell:
            listener()
        return lambda: None

    def _forget(self, entry: tuple[Ticket, Callable[[], None]]) -> None:
        with self._lock:
            if entry in self._listeners:
                self._listeners.remove(entry)

    def stop(self, origin: Ticket | None = None) -> None:
        """Tell every part but ``origin`` (the one failing) to stop."""
        with self._lock:
            if self._stopped:
                return
            self._stopped, self._origin = True, origin
            listeners = [listener for ticket, listener in self._listeners if ticket is not origin]
            self._listeners.clear()
        for listener in listeners:
            with contextlib.suppress(Exception):  # one part's stopping must not keep the others going
                listener()

    def run(self, jobs: Sequence[Callable[[Ticket], T]]) -> list[T]:
        """Each job's result, in order; or, once every job has ended, the failure that stopped the others."""
        if self.workers == 1 or len(jobs) <= 1:
            return [self._guarded(job, Ticket(self)) for job in jobs]
        pool = ThreadPoolExecutor(min(self.workers, len(jobs)), thread_name_prefix="part")
        try:
            futures = [pool.submit(self._guarded, job, Ticket(self)) for job in jobs]
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:  # SIGTERM or SIGINT arrives in this thread: stop the parts, wait for them, leave
            self.stop()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if self._cause is not None:
            raise self._cause
        return [f.result() for f in futures]

    def _guarded(self, job: Callable[[Ticket], T], ticket: Ticket) -> T:
        ticket.check()
        try:
            return job(ticket)
        except BaseException as e:
            with self._lock:
                # A part that fails after another one stopped the group fails because of that stop.
                consequence = isinstance(e, PartsStopped) or (self._stopped and self._origin is not ticket)
                if self._cause is None and not consequence:
                    self._cause = e
            self.stop(ticket)
            raise
