"""`python -m benchmarks.loader` (benchmarks/loader.py): the training loader's samples/s and
where an item's time goes, on a tiny prepared folder."""

from __future__ import annotations

import numpy as np
from PIL import Image

from benchmarks.loader import loader_throughput, main, stage_times
from ttsr.data.__main__ import main as data_main
from ttsr.data.source import open_dataset


def _prepared(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((40, 40), Image.BICUBIC).save(src / f"{i}.png")
    out = tmp_path / "out"
    args = ["prepare", "--src", str(src), "--out", str(out), "--sizes", "32", "--workers", "1"]
    assert data_main([*args, "--no-progress"]) == 0
    return out


def test_loader_bench_prints_stage_times_and_samples_per_second(tmp_path, capsys):
    out = _prepared(tmp_path)
    capsys.readouterr()
    argv = ["--data", str(out), "--sizes", "32", "--workers", "0", "--seconds", "0.3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "size 32 (" in printed and "decode" in printed and "item build" in printed
    rate = [line for line in printed.splitlines() if "workers 0:" in line]
    assert len(rate) == 1 and float(rate[0].split()[2]) > 0, printed


def test_stage_times_and_throughput_are_positive(tmp_path):
    ds = open_dataset(_prepared(tmp_path), size=32, split="train")
    st = stage_times(ds, n=4)
    assert st.decode > 0 and st.resize > 0 and st.item > 0
    rate = loader_throughput(ds, workers=0, seconds=0.2, batch_size=2)
    assert rate.wall > 0 and rate.per_cpu > 0


def test_a_bad_data_folder_is_one_line_exit_2(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing"), "--sizes", "32", "--seconds", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "missing" in err[0]
