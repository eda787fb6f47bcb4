"""``python -m ttsr.data prepare --address`` on a two-node Ray cluster on this machine (head
127.0.0.1, worker 127.0.0.2, built with the tests/cluster helpers): the chunks run as Ray tasks
on both nodes and give the local path's files byte for byte; a second run does nothing; a run
whose worker node is killed after its first chunk, then run again, completes to the same files.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cluster import procs
from cluster.conftest import _ray_env, _stop_all, start_two_nodes
from PIL import Image

from ttsr.data.prepare import prepare

from .conftest import DATA, env

pytestmark = pytest.mark.slow

IMAGES = 12  # one chunk each (--files-per-shard 1), plus a broken and a too-small file
OPTIONS = ["--sizes", "32", "--files-per-shard", "1", "--no-progress"]


def _source(src) -> None:
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(src / f"{i}.png")
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(src / "small.png")


def _files(out) -> dict[str, bytes]:
    """Every file of a prepared folder but the lock, by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# The same as `python -m ttsr.data prepare --address`, plus a callback that SIGKILLs a raylet.
KILLING_DRIVER = """
import os, signal, sys
from pathlib import Path
from ttsr.data.prepare import prepare
from tune.execution import prepare_cluster
address, src, out, raylet = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
killed = []
def kill_once(job, node):
    if not killed:
        killed.append(len(list(out.glob("size=32/_receipts/*.json"))))
        os.kill(raylet, signal.SIGKILL)
        print("killed after", killed[0], "receipts", flush=True)
with prepare_cluster.connect(address, src=src, out=out, on_done=kill_once) as runner:
    prepare(src, out, sizes=[32], files_per_shard=1, progress=False, runner=runner)
print("finished anyway, chunks per node:", dict(runner.chunks_per_node), flush=True)
"""


def _cli(address: str, src, out, root):
    argv = [*DATA, "prepare", "--src", str(src), "--out", str(out), "--address", address]
    return subprocess.run(
        [*argv, *OPTIONS],
        cwd=root,
        env=env(**_ray_env()),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_two_node_prepare_matches_local_resumes_and_survives_a_lost_node(figures):
    root = procs.short_tmpdir("rp")
    src = root / "src"
    _source(src)
    started: list[procs.Started] = []
    try:
        nodes = start_two_nodes(root, started)
        address = nodes.address
        local = root / "local"
        prepare(src, local, sizes=[32], files_per_shard=1, workers=1, progress=False)
        expected = _files(local)
        assert sum(".parquet" in k for k in expected) == 2 * (IMAGES + 2)

        t0 = time.monotonic()
        first = _cli(address, src, root / "cluster", root)
        assert first.returncode == 0, first.stderr[-3000:]
        figures(f"{IMAGES + 2} chunks on two nodes in {time.monotonic() - t0:.1f} s (CLI)")
        assert _files(root / "cluster") == expected
        assert "skipped files: 2" in first.stdout and "broken.png" in first.stdout
        assert f"{IMAGES + 2} chunks on 2 nodes" in first.stdout, first.stdout  # both worked
        again = _cli(address, src, root / "cluster", root)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"({IMAGES + 2} already done)" in again.stdout  # nothing redone
        assert _files(root / "cluster") == expected

        # A driver that kills the worker node's raylet as soon as the first chunk is done
        # (the callback makes "mid-way" certain), then the same command again.
        lost = root / "lost"
        argv = [sys.executable, "-c", KILLING_DRIVER, address, str(src), str(lost)]
        raylet = nodes.worker_raylet()
        killed = subprocess.run(
            [*argv, str(raylet)],
            cwd=root,
            env=env(**_ray_env()),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "killed after" in killed.stdout, killed.stdout + killed.stderr[-3000:]
        done_at_kill = int(killed.stdout.split("killed after ")[1].split()[0])
        assert done_at_kill < IMAGES + 2 and not procs.alive(raylet)  # the node died mid-way
        figures(f"killed run: exit {killed.returncode}, {killed.stdout.strip().splitlines()[-1]}")
        rerun = _cli(address, src, lost, root)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert _files(lost) == expected
    finally:
        left = _stop_all(started)
        stray = procs.pids_naming(str(root))
        procs.signal_pids(stray, signal.SIGKILL)
        if not left and not stray:
            shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes survived teardown: {sorted(left)}"
