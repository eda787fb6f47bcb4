"""Start server processes for the cluster tests and stop exactly those, by PID.

Every process is started in a new session (``start_new_session=True``), so it and everything it
spawns share a session id equal to its PID, even after an intermediate parent dies and the
children are reparented. ``Started.stop`` signals that session's members, the leader's
descendants, and any process whose command line names the test's own temp directory (Ray
workers retitle themselves but keep their session) — never anything found by a broad name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short_tmpdir(prefix: str) -> Path:
    """A fresh directory directly under /tmp: Ray puts unix sockets in its temp dir, and a
    socket path must stay under 108 bytes, which pytest's tmp_path can exceed."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# ------------------------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, session id) of a process, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces: split after the last ')'
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[3])


def _cmdline(pid: int) -> str:
    try:
        return (
            (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def alive(pid: int) -> bool:
    """Running (zombies count as gone: they hold no resources and cannot be signalled away)."""
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def related_pids(leader: int, marker: str | None = None) -> set[int]:
    """Processes that belong to a started process: its session, its descendants, and (when
    ``marker`` is given) any process whose command line contains ``marker``."""
    table = {pid: st for pid in _all_pids() if (st := _stat(pid)) is not None}
    found = {pid for pid, (_, _, sid) in table.items() if sid == leader}
    if leader in table:
        found.add(leader)
    grew = True
    while grew:  # descendants that called setsid themselves
        new = {pid for pid, (_, ppid, _) in table.items() if ppid in found} - found
        found |= new
        grew = bool(new)
    if marker:
        found |= {pid for pid in table if marker in _cmdline(pid)}
    found.discard(os.getpid())
    return {pid for pid in found if table[pid][0] != "Z"}


def descendants(pid: int) -> set[int]:
    """PIDs of every process below ``pid`` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for child in _all_pids():
        st = _stat(child)
        if st is not None:
            children.setdefault(st[1], []).append(child)
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def pids_naming(marker: str) -> set[int]:
    """Live processes whose command line contains ``marker`` (a unique temp dir path)."""
    me = os.getpid()
    return {pid for pid in _all_pids() if pid != me and marker in _cmdline(pid) and alive(pid)}


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
            time.sleep(0.5)
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
