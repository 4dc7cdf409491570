"""Measure one command the way the benchmark needs: wall time, CPU of the whole process tree,
peak RSS of the tree, bytes it wrote to disk, and the largest temporary file it left in a folder.

How, without strace or cgroups:

* The benchmark process makes itself a *child subreaper* (prctl), so daemons a command starts
  (gpg-agent forks itself away from gpg) are re-parented to the benchmark instead of init and
  stay inside "the tree": every descendant of the benchmark except the SeaweedFS server.
* CPU seconds: the delta of ``getrusage(RUSAGE_CHILDREN)`` across the run. The kernel adds a
  process's user+sys time to its parent's "children" account when it is reaped, so once the
  command and any re-parented daemons are reaped here, the delta is the CPU of every process of
  the run, gpg included (whatever the sampling rate).
* Peak RSS: a sampler thread reads /proc every ``interval`` seconds and sums the resident set of
  every process in the tree (shared pages are counted once per process: a slight over-count).
* Disk writes: ``write_bytes`` of /proc/<pid>/io, read from the command while it is a zombie
  (not yet reaped): the kernel has by then folded in the counts of every descendant that was
  reaped inside the tree; daemons re-parented here are read the same way before reaping.
* stderr goes to the log with each line stamped with the seconds since the start, so that the
  phases of a run (streaming done, commit) can be read off afterwards.
* Temporary files: each sample also walks the given folders (the command's TMPDIR and HOME) and
  keeps the largest total size and the largest single file seen.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphaned descendants (daemonised gpg-agents) are re-parented to this process."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


@dataclass
class ProcInfo:
    ppid: int
    comm: str
    rss: int  # bytes
    cpu_ticks: int
    state: str


def read_proc(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    lp, rp = data.index(b"("), data.rindex(b")")
    rest = data[rp + 2 :].split()
    # Fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    return ProcInfo(
        ppid=int(rest[1]),
        comm=data[lp + 1 : rp].decode(errors="replace"),
        rss=int(rest[21]) * PAGE,
        cpu_ticks=int(rest[11]) + int(rest[12]),
        state=rest[0].decode(),
    )


def snapshot() -> dict[int, ProcInfo]:
    procs: dict[int, ProcInfo] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = read_proc(int(name))
            if info is not None:
                procs[int(name)] = info
    return procs


def descendants(procs: Mapping[int, ProcInfo], root: int, exclude: set[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, info in procs.items():
        children.setdefault(info.ppid, []).append(pid)
    out: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in exclude:
                out.append(child)
                stack.append(child)
    return out


def write_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def cpu_seconds_of(pid: int) -> float:
    """User+sys of one live process (all threads), e.g. the S3 server during a run."""
    info = read_proc(pid)
    return info.cpu_ticks / CLK_TCK if info else 0.0


def folder_usage(folders: Sequence[Path]) -> tuple[int, int, str]:
    """(total bytes, largest file bytes, largest file path) of regular files under the folders."""
    total = largest = 0
    where = ""
    for folder in folders:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue  # removed between listing and stat
                total += st.st_size
                if st.st_size > largest:
                    largest, where = st.st_size, path
    return total, largest, where


def pss_of(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Measurement:
    returncode: int
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    peak_rss_bytes: int
    peak_rss_by_command: dict[str, int]
    # The tree's memory with shared pages counted once: the sum of PSS. A child forked by Python and
    # not yet turned into gpg shares every page of its parent, and the RSS sum counts them twice.
    peak_pss_bytes: int
    max_single_maxrss_bytes: int  # ru_maxrss: the largest single process of the tree (kernel's own figure)
    disk_write_bytes: int
    server_cpu_s: float
    samples: int
    tmp_peak_total_bytes: int = 0
    tmp_largest_file_bytes: int = 0
    tmp_largest_file: str = ""
    leftover_processes: list[str] = field(default_factory=list)
    cpu_by_command_sampled_s: dict[str, float] = field(default_factory=dict)  # lower bound: last sample
    phases: dict[str, float | None] = field(default_factory=dict)  # filled in by the caller from the log

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s

    def as_dict(self) -> dict[str, object]:
        d = dict(self.__dict__)
        d["cpu_s"] = self.cpu_s
        return d


class _Sampler(threading.Thread):
    def __init__(self, exclude: set[int], interval: float, watch: Sequence[Path]) -> None:
        super().__init__(name="proc-sampler", daemon=True)
        self.exclude = exclude
        self.interval = interval
        self.watch = list(watch)
        self.stop_event = threading.Event()
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_by_command: dict[str, int] = {}
        self.samples = 0
        self.tmp_total = self.tmp_largest = 0
        self.tmp_where = ""
        self.lock = threading.Lock()
        self.cpu_seen: dict[int, tuple[str, int]] = {}  # pid -> (command, CPU ticks at its last sample)
        procs = snapshot()
        inside = set(descendants(procs, os.getpid(), exclude))
        self.foreign = set(procs) - inside - {os.getpid()}

    def sample(self) -> None:
        with self.lock:
            self._sample()

    def _sample(self) -> None:
        # Only processes not yet known to be outside the tree are read: an outside process never
        # joins it (re-parenting to this subreaper happens only to its own descendants), and
        # reading every process of the machine every 50 ms would cost a fifth of a core.
        procs: dict[int, ProcInfo] = {}
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in self.foreign:
                info = read_proc(int(name))
                if info is not None:
                    procs[int(name)] = info
        tree = descendants(procs, os.getpid(), self.exclude)
        self.foreign.update(set(procs) - set(tree) - {os.getpid()})
        rss = sum(procs[p].rss for p in tree)
        self.peak_pss = max(self.peak_pss, sum(pss_of(p) for p in tree))
        self.samples += 1
        for p in tree:
            self.cpu_seen[p] = (procs[p].comm, procs[p].cpu_ticks)
        if rss > self.peak_rss:
            self.peak_rss = rss
            by: dict[str, int] = {}
            for p in tree:
                by[procs[p].comm] = by.get(procs[p].comm, 0) + procs[p].rss
            self.peak_by_command = by
        if self.watch:
            total, largest, where = folder_usage(self.watch)
            self.tmp_total = max(self.tmp_total, total)
            if largest > self.tmp_largest:
                self.tmp_largest, self.tmp_where = largest, where

    def run(self) -> None:
        _helper_thread()
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)


def measure(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stdin: bytes | None,
    stdout: Path,
    stderr: Path,
    exclude_pids: set[int],
    server_pid: int | None = None,
    watch: Sequence[Path] = (),
    interval: float = 0.05,
    linger: float = 3.0,
) -> Measurement:
    """Run argv to completion and measure its whole process tree (see the module docstring).

    ``exclude_pids`` are long-lived children of the benchmark that are not part of the run (the S3
    server). Processes of the run still alive ``linger`` seconds after the command exits (a
    gpg-agent nobody stopped) are reported in ``leftover_processes``, then terminated and reaped so
    their CPU still counts.
    """
    server_cpu0 = cpu_seconds_of(server_pid) if server_pid else 0.0
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = _Sampler(exclude_pids, interval, watch)
    out, err = stdout.open("wb"), stderr.open("wb")
    try:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
        )
        sampler.start()
        assert proc.stderr is not None
        stamper = threading.Thread(target=_stamp_lines, args=(proc.stderr, err, t0), name="stderr", daemon=True)
        stamper.start()
        if stdin is not None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(stdin)
            proc.stdin.close()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
        wall = time.monotonic() - t0
        sampler.sample()  # the zombie's last moment still shows the rest of the tree
        written = write_bytes(proc.pid)  # includes every descendant it reaped
        _pid, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        leftovers = reap_orphans(exclude_pids | {proc.pid}, linger)
        sampler.stop_event.set()
        sampler.join()
        stamper.join(timeout=10)  # EOF once every process of the run is gone
    except BaseException:
        kill_tree(exclude_pids)  # interrupted (Ctrl-C, SIGTERM): leave nothing of the run behind
        raise
    finally:
        out.close()
        err.close()
    written += sum(w for _name, w in leftovers.values())
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Measurement(
        returncode=proc.returncode,
        wall_s=wall,
        cpu_user_s=ru1.ru_utime - ru0.ru_utime,
        cpu_sys_s=ru1.ru_stime - ru0.ru_stime,
        peak_rss_bytes=sampler.peak_rss,
        peak_rss_by_command=sampler.peak_by_command,
        peak_pss_bytes=sampler.peak_pss,
        max_single_maxrss_bytes=ru.ru_maxrss * 1024,
        disk_write_bytes=written,
        server_cpu_s=(cpu_seconds_of(server_pid) - server_cpu0) if server_pid else 0.0,
        samples=sampler.samples,
        tmp_peak_total_bytes=sampler.tmp_total,
        tmp_largest_file_bytes=sampler.tmp_largest,
        tmp_largest_file=sampler.tmp_where,
        leftover_processes=[name for name, _w in leftovers.values() if name.startswith("!")],
        cpu_by_command_sampled_s=_cpu_by_command(sampler.cpu_seen),
    )


def _cpu_by_command(seen: dict[int, tuple[str, int]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for comm, ticks in seen.values():
        out[comm] = round(out.get(comm, 0.0) + ticks / CLK_TCK, 2)
    return out


def kill_tree(exclude: set[int]) -> None:
    """SIGKILL every descendant of this process but the excluded ones (and their own children)."""
    procs = snapshot()
    for pid in descendants(procs, os.getpid(), exclude):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    reap_orphans(exclude, linger=0)


def _helper_thread() -> None:
    """Signals go to the main thread, so that Ctrl-C or SIGTERM interrupts its wait at once."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _stamp_lines(pipe: IO[bytes], sink: IO[bytes], t0: float) -> None:
    """Copy the command's stderr to the log, each line prefixed with seconds since its start."""
    _helper_thread()
    for line in iter(pipe.readline, b""):
        sink.write(f"{time.monotonic() - t0:9.3f} ".encode() + line)
    pipe.close()


def reap_orphans(exclude: set[int], linger: float) -> dict[int, tuple[str, int]]:
    """Reap processes of the run re-parented to us; returns {pid: (name, write_bytes)}.

    A name starting with "!" marks a process that was still running after ``linger`` seconds and
    had to be terminated.
    """
    found: dict[int, tuple[str, int]] = {}
    deadline = time.monotonic() + linger
    while True:
        procs = snapshot()
        mine = [p for p, info in procs.items() if info.ppid == os.getpid() and p not in exclude]
        if not mine:
            return found
        for pid in mine:
            if procs[pid].state == "Z":
                found[pid] = (found.get(pid, (procs[pid].comm, 0))[0], write_bytes(pid))
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            elif time.monotonic() > deadline:
                if pid not in found:
                    found[pid] = ("!" + procs[pid].comm + " " + cmdline(pid), 0)
                late = time.monotonic() > deadline + 2
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
        time.sleep(0.05)
