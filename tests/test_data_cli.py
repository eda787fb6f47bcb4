"""``python -m ttsr.data``: exit codes, one-line errors, prepare / info output.

The loader benchmark (once ``python -m ttsr.data bench``) is tests/test_bench_loader.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ttsr.data.__main__ import main

REPO = Path(__file__).resolve().parents[1]


def test_missing_and_empty_source_exit_2(tmp_path, capsys):
    assert main(["prepare", "--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and err[0].startswith("error:")
    (tmp_path / "empty").mkdir()
    assert main(["prepare", "--src", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert main(["info", str(tmp_path / "empty")]) == 2
    assert "manifest" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "--src", str(tmp_path)])  # --out missing: argparse usage error
    assert exc.value.code == 2


def test_prepare_info(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((40, 40), Image.BICUBIC).save(src / f"{i}.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "out"
    args = ["prepare", "--src", str(src), "--out", str(out), "--sizes", "32", "--workers", "1"]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "skipped files: 1" in printed and "broken.jpg" in printed
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "broken.jpg" in info and "    32 " in info
    row = next(line for line in info.splitlines() if line.strip().startswith("32 "))
    train, test = (int(x) for x in row.split()[1:3])
    assert train + test == 10


@pytest.mark.slow
def test_module_entry_point_exit_code(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ttsr.data",
            "prepare",
            "--src",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing" in proc.stderr
