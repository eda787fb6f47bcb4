"""Start server processes for the tests and stop exactly those, by PID; find the processes and
listening sockets that belong to a test (psutil, not /proc by hand).

Every process is started in a new session (``start_new_session=True``), so it and everything it
spawns share a session id equal to its PID, even after an intermediate parent dies and the
children are reparented. ``Started.stop`` signals that session's members, the leader's
descendants, and any process whose command line names the test's own temp directory (Ray
workers retitle themselves but keep their session) — never anything found by a broad name.

Processes come and go while they are listed: one that exits between the listing and the read
(``NoSuchProcess``), a zombie (``ZombieProcess``) or one we may not read (``AccessDenied``) is
skipped, never an error. A process just started may not show its command line yet: the kernel
lets the parent's ``Popen`` return once exec has closed the child's close-on-exec pipe, a moment
before the new command line is in place. Callers that look for a fresh process by its command
line poll (``wait_until``).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil

T = TypeVar("T")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short_tmpdir(prefix: str) -> Path:
    """A fresh directory directly under /tmp: Ray puts unix sockets in its temp dir, and a
    socket path must stay under 108 bytes, which pytest's tmp_path can exceed."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def wait_until(check: Callable[[], T], *, timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy (returned); TimeoutError naming ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not seen within {timeout:.0f} s")
        time.sleep(every)


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Proc:
    ppid: int
    sid: int
    cmdline: tuple[str, ...]


def _table() -> dict[int, _Proc]:
    """Every live (non-zombie) process we can see, read once."""
    out: dict[int, _Proc] = {}
    for p in psutil.process_iter(["ppid", "status", "cmdline"]):
        info = p.info
        if info["status"] in (None, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            continue
        try:
            sid = os.getsid(p.pid)
        except OSError:  # exited since it was listed
            continue
        out[p.pid] = _Proc(info["ppid"] or 0, sid, tuple(info["cmdline"] or ()))
    return out


def _names(proc: _Proc, marker: str) -> bool:
    return marker in " ".join(proc.cmdline)


def cmdline(pid: int) -> list[str]:
    """The command line of a process; empty when it is gone, a zombie or not ours to read."""
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def alive(pid: int) -> bool:
    """Running (zombies count as gone: they hold no resources and cannot be signalled away)."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def related_pids(leader: int, marker: str | None = None) -> set[int]:
    """Processes that belong to a started process: its session, its descendants, and (when
    ``marker`` is given) any process whose command line contains ``marker``."""
    table = _table()
    found = {pid for pid, proc in table.items() if proc.sid == leader}
    if leader in table:
        found.add(leader)
    grew = True
    while grew:  # descendants that called setsid themselves
        new = {pid for pid, proc in table.items() if proc.ppid in found} - found
        found |= new
        grew = bool(new)
    if marker:
        found |= {pid for pid, proc in table.items() if _names(proc, marker)}
    found.discard(os.getpid())
    return found


def descendants(pid: int) -> set[int]:
    """PIDs of every live process below ``pid`` (children, grandchildren, ...)."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:  # gone (or not ours to read): no descendants we can name
        return set()
    return {k.pid for k in kids if alive(k.pid)}


def pids_naming(marker: str) -> set[int]:
    """Live processes other than this one whose command line contains ``marker`` (a unique temp
    dir path: Ray workers retitle themselves, but their command line keeps the session dir)."""
    me = os.getpid()
    return {pid for pid, proc in _table().items() if pid != me and _names(proc, marker)}


def _plain_ip(ip: str) -> str:
    """``::ffff:127.0.0.1`` (an IPv4-mapped IPv6 address) -> ``127.0.0.1``; others unchanged."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    mapped = getattr(addr, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else str(addr)


def listening_sockets(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every listening TCP socket the given processes hold; processes that
    are gone (or not ours to read) are skipped."""
    out = []
    for pid in sorted(pids):
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        out += [
            (pid, _plain_ip(c.laddr.ip), c.laddr.port)
            for c in conns
            if c.status == psutil.CONN_LISTEN
        ]
    return out


def signal_pids(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


# ------------------------------------------------------------------------------------------------
@dataclass
class Started:
    """One started command: its Popen, log file and the marker that identifies its helpers."""

    name: str
    popen: subprocess.Popen
    log: Path
    marker: str | None = None
    seen: set[int] = field(default_factory=set)  # every PID ever found to belong to it

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> set[int]:
        now = related_pids(self.pid, self.marker)
        self.seen |= now
        return now

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 8.0) -> set[int]:
        """SIGTERM everything that belongs to it, SIGKILL what is left after ``grace`` seconds;
        returns the PIDs still alive afterwards (empty when all went)."""
        targets = self.pids()
        signal_pids(targets, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.popen.poll()
            targets = {p for p in targets if alive(p)} | self.pids()
            if not targets:
                break
            time.sleep(0.2)
        if targets:
            signal_pids(targets, signal.SIGKILL)
            # SIGKILL cannot be ignored, but the kernel takes a moment on a busy machine
            deadline = time.monotonic() + 10.0
            while any(alive(p) for p in targets) and time.monotonic() < deadline:
                time.sleep(0.1)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return {p for p in self.seen if alive(p)} | self.pids()


def start(
    name: str,
    argv: list[str],
    *,
    log_dir: Path,
    env: dict[str, str] | None = None,
    marker: str | None = None,
    cwd: Path | None = None,
    unset: tuple[str, ...] = (),
) -> Started:
    """Popen ``argv`` in its own session, stdout+stderr to ``log_dir/name.log``; ``env`` is
    added to this process's environment, ``unset`` names are removed from it."""
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset},
            cwd=cwd,
            start_new_session=True,
        )
    return Started(name=name, popen=popen, log=log, marker=marker)


def wait_http(url: str, *, timeout: float, proc: Started | None = None, expect: str = "") -> str:
    """Poll ``url`` until it answers 200 (with ``expect`` in the body); fail early when ``proc``
    exits. Returns the body."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode} before {url} answered:\n"
                + proc.log_tail()
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = r.read().decode(errors="replace")
                if r.status == 200 and expect in body:
                    return body
                last = f"HTTP {r.status}"
        except (urllib.error.URLError, OSError) as e:
            last = str(getattr(e, "reason", e))
        time.sleep(0.5)
    tail = f"\n{proc.log_tail()}" if proc is not None else ""
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s ({last}){tail}")
