"""scripts/gpu_check.sh, checked without a GPU: its steps fit the 10-minute session, and the
benchmark flags it passes name cases and options that exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from benchmarks.configs import OPTIONS, PRESETS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
TEXT = SCRIPT.read_text()
SESSION_S = 600


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_step_timeouts_sum_well_under_the_session():
    steps = re.findall(r"^\s*step (\S+) (\d+) ", TEXT, flags=re.M)
    names = [name for name, _ in steps]
    assert len(names) == len(set(names)), names
    assert {"env", "tests", "bench", "packed", "packed-mps", "ablation", "compile"} <= set(names)
    total = sum(int(limit) for _, limit in steps)
    assert total <= SESSION_S - 50, f"step timeouts add up to {total} s"
    assert f"add up to {total} s" in TEXT  # the header says what the steps add up to


def test_benchmark_flags_name_real_cases_and_options():
    gpu_cases = {c.name for c in PRESETS["gpu"].cases}
    joined = re.sub(r"\\\n\s*", " ", TEXT)
    for cases in re.findall(r"--cases\s+([\w,-]+)", joined):
        assert set(cases.split(",")) <= gpu_cases, cases
    for names in re.findall(r"--options\s+([\w,-]+)", joined):
        assert set(names.split(",")) <= set(OPTIONS), names
    assert "--packed 1,2,4" in joined
    assert "scripts/mps.sh start" in joined and "scripts/mps.sh stop" in joined
