"""scripts/mps.sh, the CUDA MPS control daemon's start/stop (docker/compose.mps.yaml, the
gpu-mps worker group of k8s/raycluster.yaml, scripts/gpu_check.sh), against a fake
nvidia-cuda-mps-control that keeps its "daemon" as a file in the pipe directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mps.sh"
FAKE = """#!/usr/bin/env bash
# -d starts the "daemon" (refusing, as the real one may, if a dead one left files behind);
# otherwise one command on stdin, answered only while the daemon runs.
dir="$CUDA_MPS_PIPE_DIRECTORY"
if [ "${1:-}" = -d ]; then
    [ -z "$(ls -A "$dir")" ] || { echo "leftovers in $dir" >&2; exit 1; }
    [ -n "${FAKE_NEVER_ANSWERS:-}" ] || touch "$dir/control"
    exit 0
fi
read -r command
[ -e "$dir/control" ] || { echo "Cannot find MPS control daemon process" >&2; exit 1; }
[ "$command" = quit ] && rm -f "$dir/control"
exit 0
"""


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    fake = tmp_path / "bin" / "nvidia-cuda-mps-control"
    fake.parent.mkdir()
    fake.write_text(FAKE)
    fake.chmod(0o755)
    return {
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "CUDA_MPS_PIPE_DIRECTORY": str(tmp_path / "mps" / "pipe"),
        "CUDA_MPS_LOG_DIRECTORY": str(tmp_path / "mps" / "log"),
        "MPS_WAIT_S": "2",
    }


def mps(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_start_status_stop(env):
    assert mps(env, "status").returncode != 0  # nothing runs yet
    started = mps(env, "start")
    assert started.returncode == 0, started.stderr
    assert "daemon running" in started.stdout
    assert Path(env["CUDA_MPS_LOG_DIRECTORY"]).is_dir()
    assert mps(env, "status").returncode == 0
    again = mps(env, "start")
    assert again.returncode == 0 and "already answers" in again.stdout
    stopped = mps(env, "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert mps(env, "status").returncode != 0
    assert mps(env, "stop").returncode == 0  # nothing to stop


def test_start_clears_what_a_dead_daemon_left(env):
    pipes = Path(env["CUDA_MPS_PIPE_DIRECTORY"])
    pipes.mkdir(parents=True)
    (pipes / "control_lock").write_text("")  # a daemon that died, e.g. a restarted container
    assert mps(env, "start").returncode == 0
    assert mps(env, "status").returncode == 0
    assert not (pipes / "control_lock").exists()


def test_exec_starts_the_daemon_then_runs_the_command_with_its_variables(env):
    out = mps(env, "exec", "bash", "-c", 'echo "client of $CUDA_MPS_PIPE_DIRECTORY"')
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == f"client of {env['CUDA_MPS_PIPE_DIRECTORY']}"
    assert mps(env, "status").returncode == 0


def test_failures_are_loud(env, tmp_path):
    assert "set CUDA_MPS_PIPE_DIRECTORY" in mps({"PATH": env["PATH"]}, "start").stderr
    missing = mps({**env, "MPS_CONTROL": str(tmp_path / "no-such-control")}, "start")
    assert missing.returncode == 1 and "no-such-control not found" in missing.stderr
    silent = mps({**env, "FAKE_NEVER_ANSWERS": "1", "MPS_WAIT_S": "1"}, "start")
    assert silent.returncode == 1 and "did not answer" in silent.stderr
    not_run = mps({**env, "FAKE_NEVER_ANSWERS": "1", "MPS_WAIT_S": "1"}, "exec", "true")
    assert not_run.returncode == 1  # no daemon: the command is not started
    assert mps(env, "bogus").returncode == 2
