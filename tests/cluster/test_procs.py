"""procs: a started command and everything it spawns are found and stopped by PID, including a
child that left the session and one that ignores SIGTERM; nothing else is touched."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import psutil

from . import procs

# A parent that spawns: a plain child, a child in its own session (setsid), and a child that
# ignores SIGTERM; it prints their PIDs and waits.
TREE = """
import os, subprocess, sys, time
sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
kids = [
    subprocess.Popen(sleep),
    subprocess.Popen(sleep, start_new_session=True),
    subprocess.Popen([sys.executable, "-c", stubborn]),
]
print(" ".join(str(k.pid) for k in kids), flush=True)
time.sleep(120)
"""


def _wait_line(path, timeout=30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text()
        if text.endswith("\n"):
            return text.strip()
        time.sleep(0.1)
    raise TimeoutError(f"{path}: no line after {timeout} s")


def test_stop_kills_the_whole_tree_and_nothing_else(tmp_path):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = procs.start("tree", [sys.executable, "-c", TREE], log_dir=tmp_path)
        kids = {int(p) for p in _wait_line(started.log).split()}
        assert started.pids() >= kids | {started.pid}
        assert bystander.pid not in started.pids()
        t0 = time.monotonic()
        left = started.stop(grace=2.0)
        assert not left
        assert time.monotonic() - t0 < 10
        assert not any(procs.alive(p) for p in kids | {started.pid})
        assert bystander.poll() is None  # not ours: untouched
    finally:
        bystander.kill()
        bystander.wait()


def test_marker_finds_processes_naming_a_directory(tmp_path):
    marker = str(tmp_path / "unique-marker")
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        # Popen returns once exec has begun; the new command line shows a moment later.
        procs.wait_until(
            lambda: p.pid in procs.pids_naming(marker), timeout=30, what="the child's marker"
        )
        assert marker in procs.cmdline(p.pid)
        assert p.pid not in procs.pids_naming(marker + "-other")
    finally:
        p.kill()
        p.wait()
    assert p.pid not in procs.pids_naming(marker)
    assert procs.cmdline(p.pid) == [] and not procs.alive(p.pid)  # gone: no error


def test_exiting_and_zombie_processes_are_skipped(tmp_path):
    """Processes start and exit while the helpers list them: none of the helpers raises, and a
    zombie (exited, not yet reaped) counts as gone."""
    marker = str(tmp_path / "churn")
    quick = [sys.executable, "-c", "pass", marker]
    zombie = subprocess.Popen(quick)  # never polled until the end: stays a zombie
    churn: list[subprocess.Popen] = []
    try:
        procs.wait_until(lambda: not procs.alive(zombie.pid), timeout=30, what="child exit")
        assert psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE
        churn = [subprocess.Popen(quick) for _ in range(6)]  # exit while we list
        for _ in range(3):
            assert zombie.pid not in procs.pids_naming(marker)
            assert zombie.pid not in procs.related_pids(zombie.pid, marker)
            assert zombie.pid not in procs.descendants(os.getpid())
            assert procs.cmdline(zombie.pid) == []
            procs.listening_sockets({c.pid for c in churn} | {zombie.pid})
    finally:
        for c in [zombie, *churn]:
            c.wait()


def test_free_port_and_wait_http_fail_fast(tmp_path):
    port = procs.free_port()
    assert 1024 < port < 65536
    dead = procs.start("exits", [sys.executable, "-c", "print('bye')"], log_dir=tmp_path)
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/", timeout=20, proc=dead)
    except RuntimeError as e:
        assert "exits exited with 0" in str(e) and "bye" in str(e)
    else:
        raise AssertionError("wait_http did not notice the process exit")
    assert not dead.stop()


def test_listening_sockets_of_a_process(tmp_path):
    server = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        found = procs.listening_sockets({server.pid})
        assert (server.pid, "127.0.0.1", port) in found
        assert all(pid == server.pid for pid, _, _ in found)
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass
    finally:
        server.kill()
        server.wait()
    assert procs.listening_sockets({server.pid}) == []


# Listens on 127.0.0.1 (a free port), prints the port.
LISTENER = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""
