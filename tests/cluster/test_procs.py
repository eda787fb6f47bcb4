"""procs: a started command and everything it spawns are found and stopped by PID, including a
child that left the session and one that ignores SIGTERM; nothing else is touched."""

from __future__ import annotations

import subprocess
import sys
import time

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
        assert p.pid in procs.pids_naming(marker)
        assert p.pid not in procs.pids_naming(marker + "-other")
    finally:
        p.kill()
        p.wait()
    assert p.pid not in procs.pids_naming(marker)


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
