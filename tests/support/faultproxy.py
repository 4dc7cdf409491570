"""A fault-injecting TCP proxy between the tool and an S3 endpoint, on loopback only.

Why a proxy and not a stopped server: a real network fails in the middle of a response (a
firewall drops an idle flow, a load balancer resets a connection, a link stalls), which is
exactly where resuming and retrying code is wrong if it is wrong at all. The proxy forwards
bytes unchanged (SigV4 signs the Host header, which the client addressed to the proxy, so
signatures still verify) and, when armed, cuts, stalls or resets.

Bounded: it listens on 127.0.0.1 only, accepts at most ``max_connections`` connections and
closes itself after ``lifetime`` seconds, whatever the test does.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Literal

Direction = Literal["up", "down"]  # up: client -> store (a put's bytes), down: store -> client (a get's)
BUFFER = 64 * 1024


@dataclass
class Counters:
    connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    cuts: int = 0
    resets: int = 0
    stalls: int = 0


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped flow looks to the peer, not a polite FIN.

    ``shutdown(SHUT_RD)`` first: it wakes the other direction's thread blocked in ``recv`` on this
    socket (a plain ``close`` would not, and the RST would wait for the peer's read timeout).
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    """A client connection and its upstream twin; closed when both directions' pumps have ended."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self._pumps = 2
        self._lock = threading.Lock()

    def pump_done(self) -> bool:
        with self._lock:
            self._pumps -= 1
            return self._pumps == 0


class FaultProxy:
    def __init__(
        self, target_host: str, target_port: int, *, lifetime: float = 1800.0, max_connections: int = 20000
    ) -> None:
        if target_host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fault proxy forwards to loopback addresses only")
        self.target = (target_host, target_port)
        self.lifetime = lifetime
        self.max_connections = max_connections
        self.counters = Counters()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        # Faults, armed by the test.
        self._cut_every = 0
        self._cut_direction: Direction = "down"
        self._cuts_left = 0
        self._since_cut = 0
        self._stall_seconds = 0.0
        self._stalls_left = 0
        self._resets_left = 0
        self._hold_direction: Direction | None = None
        self._hold_from = 0
        self._hold_seen = 0
        self._held = 0
        self._released = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- faults ----------------------------------------------------------------------------

    def cut_every(self, nbytes: int, *, direction: Direction = "down", times: int = 1) -> None:
        """Reset the connection that carries byte ``nbytes``, ``2 * nbytes``, … in ``direction`` (counted
        across connections from now on), ``times`` times in all."""
        with self._lock:
            self._cut_every, self._cut_direction, self._cuts_left, self._since_cut = nbytes, direction, times, 0

    def stall(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` chunks (either direction) for ``seconds`` each."""
        with self._lock:
            self._stall_seconds, self._stalls_left = seconds, times

    def reset_new_connections(self, times: int = 1) -> None:
        """Accept and immediately reset the next ``times`` connections."""
        with self._lock:
            self._resets_left = times

    def hold_after(self, nbytes: int, *, direction: Direction = "up") -> None:
        """Forward ``nbytes`` more in ``direction``, then hold every further chunk in it until
        :meth:`release`: a transfer frozen at a known point, where a timed fault could come too late."""
        with self._lock:
            self._hold_direction, self._hold_from, self._hold_seen = direction, nbytes, 0
            self._released.clear()

    def release(self) -> None:
        with self._lock:
            self._hold_direction = None
        self._released.set()

    @property
    def held(self) -> int:
        """Chunks waiting in a hold now."""
        with self._lock:
            return self._held

    def clear(self) -> None:
        with self._lock:
            self._cuts_left = self._stalls_left = self._resets_left = 0
        self.release()

    @property
    def cuts_left(self) -> int:
        with self._lock:
            return self._cuts_left

    def snapshot(self) -> Counters:
        with self._lock:
            return Counters(**vars(self.counters))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._released.set()
        self._thread.join(timeout=5)
        with self._lock:
            socks = list(self._open)
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        deadline = time.monotonic() + self.lifetime
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._lock:
                self.counters.connections += 1
                too_many = self.counters.connections > self.max_connections
                reset = self._resets_left > 0
                if reset:
                    self._resets_left -= 1
                    self.counters.resets += 1
            if too_many or reset:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            link = _Link(client, upstream)
            threading.Thread(target=self._pump, args=(client, upstream, "up", link), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "down", link), daemon=True).start()
        self._stop.set()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: Direction, link: _Link) -> None:
        pair = (link.client, link.upstream)
        try:
            while not self._stop.is_set():
                data = src.recv(BUFFER)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                self._wait_if_held(direction, len(data))
                stall, cut_at = self._plan(direction, len(data))
                if stall:
                    time.sleep(stall)
                if cut_at is not None:
                    if cut_at:
                        dst.sendall(data[:cut_at])
                    self._count(direction, cut_at)
                    for s in pair:
                        _reset(s)
                    return
                dst.sendall(data)
                self._count(direction, len(data))
        except OSError:
            for s in pair:
                _reset(s)
        finally:
            if link.pump_done():
                for s in pair:
                    with contextlib.suppress(OSError):
                        s.close()
                with self._lock:
                    self._open.difference_update(pair)

    def _wait_if_held(self, direction: Direction, n: int) -> None:
        with self._lock:
            if self._hold_direction != direction:
                return
            if self._hold_seen < self._hold_from:
                self._hold_seen += n
                return
            self._held += 1
        try:
            while not self._released.wait(0.2) and not self._stop.is_set():
                pass
        finally:
            with self._lock:
                self._held -= 1

    def _plan(self, direction: Direction, n: int) -> tuple[float, int | None]:
        """How long to hold this chunk, and after how many of its bytes to cut (None: do not cut)."""
        with self._lock:
            stall = 0.0
            if self._stalls_left > 0:
                self._stalls_left -= 1
                self.counters.stalls += 1
                stall = self._stall_seconds
            if self._cuts_left <= 0 or direction != self._cut_direction:
                return stall, None
            if self._since_cut + n < self._cut_every:
                self._since_cut += n
                return stall, None
            cut_at = self._cut_every - self._since_cut
            self._since_cut = 0
            self._cuts_left -= 1
            self.counters.cuts += 1
            return stall, cut_at

    def _count(self, direction: Direction, n: int) -> None:
        with self._lock:
            if direction == "up":
                self.counters.bytes_up += n
            else:
                self.counters.bytes_down += n
