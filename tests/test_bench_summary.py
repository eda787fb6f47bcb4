"""benchmarks/summary.py: the GPU tables of docs/BENCHMARKS.md from scripts/gpu_check.sh's JSON."""

from __future__ import annotations

import json

from benchmarks import summary

ENV = {"gpu": "NVIDIA H200", "torch": "2.14.1", "cuda": "13.0", "python": "3.11", "date": "today"}


def _row(case: str, path: str, img_s: float, **extra) -> dict:
    return {
        "case": case,
        "path": path,
        "status": "ok",
        "img_s": img_s,
        "step_ms": 8e3 / img_s,
        "host_ms": 2.0,
        "peak_mib": 4096.0,
        **extra,
    }


def test_tables_from_the_files_that_exist(tmp_path):
    bench = {
        "environment": ENV,
        "cases": [{"name": "rec-160-b8"}, {"name": "rec-1024-b8"}],
        "results": [
            _row("rec-160-b8", "reference", 100.0),
            _row("rec-160-b8", "optimised", 650.0),
            {"case": "rec-1024-b8", "path": "reference", "status": "skipped (cannot fit)"},
            {"case": "rec-1024-b8", "path": "optimised", "status": "oom"},
        ],
    }
    packed = {
        "packed": [
            {
                "case": "rec-160-b8",
                "trials": n,
                "status": "ok",
                "aggregate_img_s": 600.0 * n,
                "per_trial_img_s": [600.0] * n,
                "peak_mib_per_trial": 4096.0,
            }
            for n in (1, 4)
        ]
    }
    compile_rows = [_row("rec-160-b8", "default", 650.0, warmup_s=2.0)]
    compile_rows += [
        _row("rec-160-b8", "default + torch.compile", 700.0, warmup_s=w) for w in (90.0, 20.0)
    ]
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    (tmp_path / "packed.json").write_text(json.dumps(packed))
    (tmp_path / "compile.json").write_text(json.dumps({"done": compile_rows}))
    text = summary.summary(tmp_path)
    assert "GPU: **NVIDIA H200**" in text
    assert "| rec-160-b8 | 113.0 | 100.0 | 650.0 | 6.50x | 4.0 GiB | 4.0 GiB | 2.0 / 12.3 |" in text
    assert "| rec-1024-b8 | - | skipped (cannot fit) | oom | - |" in text
    assert "| rec-160-b8 img/s | 650.00 | >= 600 | PASS |" in text
    assert "| packed x4 rec-160-b8 img/s | 2400.00 | >= 1200 | PASS |" in text
    assert "| 4 | no | 2400.0 | 600, 600, 600, 600 | 4.0 GiB |" in text
    assert "| default + torch.compile (run 2) | 11.4 | 700.0 | 4.0 GiB | 20.0 |" in text
    assert text.count("(none)") == 2  # no ablation.json, no search.json


def test_missing_bench_and_bad_usage(tmp_path, capsys):
    assert "bench.json: missing" in summary.summary(tmp_path)
    assert summary.main([str(tmp_path / "nope")]) == 2
    assert summary.main([str(tmp_path)]) == 0
    assert "bench.json: missing" in capsys.readouterr().out
