"""`python -m benchmarks.train_step` on a tiny configuration (CPU): both paths, a ratio, the JSON.

The command runs from the repository root, where `benchmarks/` (not installed) is found.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import train_step
from benchmarks.configs import (
    OPTIONS,
    PRESETS,
    SPEED_FIELDS,
    Case,
    ablation_configs,
    option_configs,
    reference_config,
    study_config,
)
from benchmarks.summary import target_checks
from ttsr.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.train_step", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.slow  # a real process: ~10 s on a quiet machine, ~40 s on a loaded one
def test_quick_cpu_run_prints_both_paths_and_a_ratio(tmp_path):
    out = tmp_path / "bench.json"
    proc = _run(
        "--quick",
        "--cases",
        "rec-32-b2",
        "--warmup",
        "0",
        "--steps",
        "1",
        "--isolate",
        "none",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("rec-32-b2")]
    assert [r[1] for r in rows] == ["reference", "optimised"], proc.stdout
    assert rows[1][-2].endswith("x")  # the speed ratio b/a

    report = json.loads(out.read_text())
    results = {r["path"]: r for r in report["results"]}
    assert set(results) == {"reference", "optimised"}
    for r in results.values():
        assert r["status"] == "ok" and r["img_s"] > 0 and r["step_ms"] > 0
        assert r["size"] == 32 and r["batch"] == 2
    ratio = report["ratios"][0]["speed_ratio"]
    assert ratio == pytest.approx(results["optimised"]["img_s"] / results["reference"]["img_s"])
    assert report["settings"]["reference"]["search_chunk"] == 0
    assert report["settings"]["optimised"]["search_chunk"] is None
    assert report["settings"]["reference"]["log_every_steps"] == 1
    assert report["settings"]["optimised"] == {
        k: v
        for k, v in results["optimised"]["config"].items()
        if k in report["settings"]["optimised"]
    }
    assert results["reference"]["config"]["size"] == results["optimised"]["config"]["size"] == 32
    assert results["reference"]["check_every"] == results["optimised"]["check_every"] == 1
    assert report["environment"]["torch"]


def test_the_bench_path_imports_neither_ray_nor_mlflow():
    # The GPU box has only PyTorch: importing the benchmarks must not pull Ray or MLflow in.
    code = (
        "import sys, benchmarks.train_step, benchmarks.loader; "
        "bad = [m for m in ('ray', 'mlflow') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_child_protocol_round_trips_a_job():
    case = Case("c", 32, 1, "all", 0, 1)
    job = train_step.Job(
        case=case,
        config=study_config(case, device="cpu", n_feats=8, blocks="1+1+1+1"),
        path="optimised",
        threads=1,
        barrier=("/tmp/x", 0, 2),
    )
    back = train_step.job_from_json(train_step.job_to_json(job))
    assert back == job
    assert back.config.to_dict() == job.config.to_dict()  # also the fields == leaves out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cases", "nope"], "--cases: unknown case(s) nope"),
        (["--steps", "0"], "--steps: must be >= 1"),
        (["--blocks", "1+1"], "--n-feats/--blocks"),
        (["--packed", "0"], "--packed: every count must be >= 1"),
        (["--packed", "two"], "--packed: want trial counts like 1,2,4"),
        (["--options", "turbo"], "--options: unknown turbo"),
    ],
)
def test_bad_flags_are_one_line_errors(args, message):
    with pytest.raises(SystemExit) as exc:
        train_step.main(["--quick", *args])
    assert message in str(exc.value)


def test_targets_are_checked_against_the_optimised_path():
    results = [
        {"case": "rec-160-b8", "path": "optimised", "status": "ok", "img_s": 700.0},
        {"case": "infer-160-b8", "path": "optimised", "status": "ok", "img_s": 2000.0},
        {"case": "all-160-b9", "path": "optimised", "status": "ok", "img_s": 100.0},
        {
            "case": "rec-512-b8",
            "path": "optimised",
            "status": "ok",
            "img_s": 70.0,
            "peak_mib": 20 * 1024,
        },
        {
            "case": "rec-512-b8-ckpt",
            "path": "optimised",
            "status": "ok",
            "img_s": 55.0,
            "peak_mib": 12 * 1024,
        },
        {"case": "rec-1024-b8", "path": "optimised", "status": "oom"},
    ]
    packed = [
        {"case": "rec-160-b8", "trials": n, "aggregate_img_s": agg}
        for n, agg in ((1, 700.0), (4, 1100.0), (2, 1300.0))
    ]
    checks = {c["target"]: c for c in target_checks(results, packed)}
    assert checks["rec-160-b8 img/s"]["pass"] is True
    assert checks["all-160-b9 img/s"]["pass"] is False
    assert checks["rec-512-b8 img/s"]["pass"] is True
    assert checks["rec-512-b8 peak GiB"]["pass"] is False  # 20 GiB > 16
    assert checks["rec-512-b8-ckpt peak GiB"]["pass"] is True  # the checkpointed variant
    assert checks["rec-512-b8-ckpt img/s"]["pass"] is False
    assert checks["rec-1024-b8 peak GiB"]["pass"] is False  # OOM
    assert "rec-1024-b8-ckpt peak GiB" not in checks  # not measured: not listed
    assert checks["packed x4 rec-160-b8 img/s"]["measured"] == 1100.0  # the largest count
    assert checks["packed x4 rec-160-b8 img/s"]["pass"] is False
    epoch = checks["epoch 8k+2k @160, compute only (s)"]
    assert epoch["measured"] == pytest.approx(8000 / 700 + 2000 / 2000)
    assert epoch["pass"] is True


@pytest.mark.slow
def test_packed_trials_report_an_aggregate(tmp_path):
    out = tmp_path / "packed.json"
    proc = _run(
        "--quick",
        "--cases",
        "rec-32-b2",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--no-compare",
        "--packed",
        "1,2",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    packed = json.loads(out.read_text())["packed"]
    assert [p["trials"] for p in packed] == [1, 2]
    for run in packed:
        assert run["status"] == "ok" and len(run["per_trial_img_s"]) == run["trials"]
        assert run["aggregate_img_s"] > 0


def test_the_optimised_path_is_the_study_config_and_the_reference_differs_in_speed_only():
    case = Case("c", 32, 2, "all", 0, 1)
    config = study_config(case, device="cpu", n_feats=8, blocks="1+1+1+1")
    changed = {k for k, v in config.to_dict().items() if v != TrainConfig().to_dict()[k]}
    assert changed == {"size", "batch_size", "n_feats", "num_res_blocks", "device"} | {
        "per_w",
        "tpl_w",
        "adv_w",
    }
    reference = reference_config(config)
    assert reference.search_chunk == 0 and reference.amp == "off" and not reference.compile
    assert _differing(config, reference) <= set(SPEED_FIELDS)


def _differing(a: TrainConfig, b: TrainConfig) -> set[str]:
    da, db = a.to_dict(), b.to_dict()
    return {k for k in da if da[k] != db[k]}


def test_ablation_runs_from_the_reference_to_the_study_config():
    config = study_config(Case("c", 32, 2, "rec", 0, 1), device="cpu", n_feats=8, blocks="2+1+1+1")
    steps = ablation_configs(config)
    assert steps[0][1] == reference_config(config)
    for (_, before), (label, after) in zip(steps, steps[1:], strict=False):
        changed = _differing(before, after)
        assert len(changed) == 1 and changed <= set(SPEED_FIELDS), label
    assert steps[-1][1] == config  # the end is what a study runs


def test_options_change_one_speed_field_each_on_the_study_config():
    config = study_config(Case("c", 32, 2, "rec", 0, 1), device="cpu", n_feats=8, blocks="2+1+1+1")
    rows = option_configs(config, tuple(OPTIONS))
    assert [label for label, _ in rows] == [label for label, _ in OPTIONS.values()]
    for (label, changed), name in zip(rows, OPTIONS, strict=True):
        assert _differing(config, changed) == set(OPTIONS[name][1]) <= set(SPEED_FIELDS), label
    assert dict(option_configs(config, ("checkpoint",)))["default + checkpoint_activations"] == (
        config.replace(checkpoint_activations=True)
    )


def test_a_case_changes_its_study_config_and_round_trips_through_a_child():
    case = next(c for c in PRESETS["gpu"].cases if c.name == "rec-512-b8-ckpt")
    config = study_config(case, device="cpu", n_feats=8, blocks="1+1+1+1")
    assert config.checkpoint_activations and not case.reference
    assert reference_config(config) == reference_config(
        config.replace(checkpoint_activations=False)
    )
    job = train_step.Job(case, config, "optimised", 1)
    assert train_step.job_from_json(train_step.job_to_json(job)) == job
    # a change may also name a field the case itself sets: the change wins
    wider = replace(case, changes=(("batch_size", 2), ("compile", True)))
    changed = study_config(wider, device="cpu", n_feats=8, blocks="1+1+1+1")
    assert (changed.batch_size, changed.compile) == (2, True)
