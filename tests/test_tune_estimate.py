"""The dry run's estimate of a GPU study: figures by pixels, a trial's images and seconds, the
study's wall time on the cluster it plans for, and the lines a laptop user sees."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ttsr.config import TrainConfig
from tune.execution.cluster import Cluster
from tune.reporting.formatting import duration
from tune.study import estimate
from tune.study.estimate import Figure, FigureSet
from tune.study.studies import StudyFile, load_study

REPO = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(REPO / "tune" / "run.py")]
FULL = TrainConfig()  # the seed's model: n_feats 64, 16+16+8+4


def _set(rows: list[Figure], code: str = "reference") -> FigureSet:
    return FigureSet("test", code, "GPU-X", "cuda", "2026-12-01", FULL.n_feats,
                     FULL.num_res_blocks, tuple(rows))  # fmt: skip


def _manifest(root: Path, sizes: dict[int, tuple[int, int]]) -> Path:
    """A prepared folder's manifest.json (only what the estimate reads)."""
    root.mkdir(parents=True, exist_ok=True)
    counts = {
        str(s): {"train": a, "test": b, "bytes": 0, "shards": 1} for s, (a, b) in sizes.items()
    }
    from ttsr.data.manifest import MANIFEST_VERSION

    manifest = {"version": MANIFEST_VERSION, "format": "png", "sizes": counts, "items": [],
                "skipped": [], "source": str(root), "seed": 0, "test_fraction": 0.2}  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _cluster(gpus: float, nodes: int = 1) -> Cluster:
    node = {"Alive": True, "Resources": {"CPU": 16, "GPU": gpus / nodes}}
    return Cluster(tuple(dict(node) for _ in range(nodes)), "test")


# ------------------------------------------------------------------------------------------------
def test_linear_by_pixels_is_exact_interpolated_and_extrapolated():
    pts = [(100.0, 1.0), (200.0, 3.0), (400.0, 4.0)]
    assert estimate._linear(pts, 200.0) == (3.0, "table")
    assert estimate._linear(pts, 150.0) == (2.0, "interpolated by pixels")
    assert estimate._linear(pts, 600.0) == (5.0, "extrapolated by pixels")  # from 200 and 400
    assert estimate._linear([(100.0, 2.0)], 300.0) == (6.0, "scaled by pixels")
    # extrapolating down to zero or below falls back to proportional scaling of the nearest
    assert estimate._linear([(100.0, 1.0), (200.0, 5.0)], 40.0) == (0.4, "scaled by pixels")


def test_other_losses_and_validation_follow_the_rec_curve():
    rows = [
        Figure(100, 8, "rec", 10.0, 8.0),  # 0.1 s and 1 GiB per image at 10x10 px
        Figure(200, 8, "rec", 2.0, 32.0),  # 0.5 s, 4 GiB
        Figure(100, 4, "all", 5.0, 8.0),  # 0.2 s (2x rec), 2 GiB (2x rec)
        Figure(100, 8, "infer", 40.0),  # 0.025 s (rec / 4)
    ]
    assert estimate.per_image(rows, "all", 100, estimate._seconds) == (0.2, "table")
    seconds, how = estimate.per_image(rows, "all", 200, estimate._seconds)
    assert seconds == pytest.approx(1.0) and how == "rec table × all/rec 2.00"
    seconds, _ = estimate.per_image(rows, "infer", 150, estimate._seconds)
    # rec at 22,500 px: 0.1 + 0.4 * 12,500 / 30,000
    assert seconds == pytest.approx((0.1 + 0.4 * 12_500 / 30_000) / 4)
    assert estimate.per_image(rows, "all", 200, estimate._gib)[0] == pytest.approx(8.0)
    assert estimate.per_image([rows[0]], "infer", 100, estimate._seconds) is None


def test_a_trial_counts_images_like_the_loop_and_prices_them(tmp_path):
    data = _manifest(tmp_path / "d", {160: (1003, 401)})
    rows = [Figure(160, 8, "rec", 100.0, 4.0), Figure(160, 9, "all", 25.0, 9.0),
            Figure(160, 8, "infer", 200.0)]  # fmt: skip
    config = TrainConfig(data=str(data), size=160, batch_size=8, fraction=0.5, epochs=4,
                         init_epochs=1, per_w=0.01, val_ref_modes=("other",),
                         val_limit=150)  # fmt: skip
    t = estimate.trial_estimate(config, rows, label="x", count=3)
    # train: ceil(0.5 * 1003) = 502 images -> 62 steps of 8 per epoch, 4 epochs
    assert t.train_images == 4 * 62 * 8
    # validation: min(ceil(0.5 * 401), 150) = 150 images, epochs 0-4, two reference modes
    assert t.val_images == 5 * 150 * 2
    # epoch 1 is reconstruction only (init_epochs): 62 steps at rec speed, 186 with all losses
    assert t.train_seconds == pytest.approx(62 * 8 / 100 + 186 * 8 / 25)
    assert t.val_seconds == pytest.approx(1500 / 200)
    assert t.peak_gib == pytest.approx(8.0)  # 1 GiB per image with all losses, batch 8
    assert t.data == f"{data}/manifest.json"
    unlimited = estimate.trial_estimate(config.replace(val_limit=None), rows, label="u", count=1)
    assert unlimited.val_images == 5 * 201 * 2  # ceil(0.5 * 401): the subset rounds up
    budget = estimate.trial_estimate(config.replace(budget_steps=1000), rows, label="b", count=1)
    assert budget.train_images == 8000 and budget.val_images == t.val_images


def test_without_a_manifest_the_seed_documents_counts_are_used(tmp_path):
    config = TrainConfig(data=str(tmp_path), fraction=0.25, epochs=1)
    t = estimate.trial_estimate(config, [Figure(160, 8, "rec", 1.0), Figure(160, 8, "infer", 1.0)],
                                label="x", count=1)  # fmt: skip
    assert t.train_images == 14_000 // 8 * 8 and t.val_images == 2 * 3_500
    assert "seed document" in t.data


def test_wall_time_divides_gpu_time_by_the_trials_at_a_time(tmp_path):
    spec = {
        "description": "x",
        "objectives": [{"metric": "val_psnr", "mode": "max"}],
        "config": {"epochs": 2},  # no data: the seed document's 56,000 / 14,000 images
        "num_samples": 5,
        "profiles": {"seed": {"gpus_per_trial": 1, "max_concurrent": 2}, "demo": {}},
    }
    path = tmp_path / "e.yaml"
    path.write_text(json.dumps({"studies": {"s": spec}}))
    study = load_study(path, "s", "seed")
    sets = [_set([Figure(160, 8, "rec", 100.0, 8.0), Figure(160, 8, "infer", 500.0)])]
    one = 2 * 56_000 / 100 + 3 * 14_000 / 500  # 1,204 s per trial
    e = estimate.estimate_study(study, _cluster(gpus=4, nodes=2), sets=sets)
    assert e.trials[0].seconds == pytest.approx(one) and e.trials[0].count == 5
    assert e.slots == 2 and e.wall_seconds == pytest.approx(5 * one / 2)  # max_concurrent 2
    assert "the cluster's 4 GPU(s) on 2 node(s)" in e.cluster
    small = estimate.estimate_study(study, _cluster(gpus=1), sets=sets)
    assert small.slots == 1 and small.wall_seconds == pytest.approx(5 * one)
    none = estimate.estimate_study(study, _cluster(gpus=0), sets=sets)  # a laptop: plans for 2
    assert none.slots == 2 and "the cluster at hand has no GPU" in none.cluster
    shared = estimate.estimate_study(
        load_study(path, "s", "seed", overrides={"gpus_per_trial": 0.5, "max_concurrent": 4}),
        _cluster(gpus=1),
        sets=sets,
    )
    # two trials share the GPU at half speed each: no faster than one at a time
    assert shared.slots == 2 and shared.wall_seconds == pytest.approx(5 * one)


def test_shipped_figures_choose_the_reference_for_the_seed_model():
    sets = estimate.load_figures()
    chosen, assumption = estimate.choose_figures(sets, FULL)
    assert (
        chosen.name == "reference-h200" and "speed-up" in assumption and "assumed 1" in assumption
    )
    measured = _set([Figure(160, 8, "rec", 600.0)], code="optimised")
    assert estimate.choose_figures([*sets, measured], FULL)[0] is measured
    assert estimate.choose_figures(sets, TrainConfig(n_feats=16)) is None  # no figures for it


# ------------------------------------------------------------------------------------------------
def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(CUDA_VISIBLE_DEVICES="", TORCH_HOME=str(cwd / "no-torch-home"))
    env.pop("TTSR_VGG19_WEIGHTS", None)  # as on a laptop: no VGG19 weights either
    return subprocess.run(RUN + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _shipped(name: str) -> dict:
    table = json.loads(estimate.FIGURES.read_text())
    return next(s for s in table["sets"] if s["name"] == name)


def test_seed_dry_run_on_a_laptop_prints_the_estimate_from_the_table(tmp_path):
    data = _manifest(tmp_path / "ffhq", {160: (56_012, 13_988)})
    args = ["--study", "ref-is-gt", "--profile", "seed", "--data", str(data), "--dry-run"]
    out = _run([*args, "--storage", str(tmp_path / "rr")], tmp_path)
    # no GPU and no VGG19 weights here: the plan and its estimate, then exit 2 with one line
    assert out.returncode == 2 and out.stderr.startswith("error: study 'ref-is-gt' (seed")
    assert len(out.stderr.strip().splitlines()) == 1
    assert "would stop --gpus-per-trial 1" in out.stdout
    ref = _shipped("reference-h200")
    rec = next(r for r in ref["train"] if (r["size"], r["losses"]) == (160, "rec"))["img_s"]
    infer = ref["infer"][0]["img_s"]
    study = StudyFile.load(REPO / "experiments.yaml").resolve("ref-is-gt")["seed"]
    epochs, fraction = study.config["epochs"], study.config["fraction"]
    train = epochs * (math.ceil(fraction * 56_012) // 8 * 8)  # 23 epochs of 28,000
    val = (epochs + 1) * math.ceil(fraction * 13_988) * 2  # epoch 0 too; gt and other refs
    seconds = train / rec + val / infer
    trials = study.num_trials()
    line = next(x for x in out.stdout.splitlines() if x.startswith("  size 160, batch 8, rec"))
    assert f"{trials} trial(s) × {duration(seconds, coarse=True)} = {train:,} train img " in line
    assert f"at {rec:.3g} img/s (table) + {val:,} val img at {infer:.3g} img/s (table)" in line
    assert "peak 4.8 GiB" in line
    wall = next(x for x in out.stdout.splitlines() if x.startswith("wall time  "))
    slots = min(study.max_concurrent, trials)
    assert wall.startswith(f"wall time  ≈ {duration(seconds * trials / slots, coarse=True)}: ")
    assert f"{trials * seconds / 3600:.1f} GPU-hours ÷ {slots} at a time" in wall
    assert "the cluster at hand has no GPU" in wall
    assert "speed-up over the reference code assumed 1" in out.stdout
    assert f"160 px from {data}/manifest.json" in out.stdout


def test_laptop_dry_run_without_data_uses_the_seed_documents_sizes(tmp_path):
    out = _run(["--study", "loss-weights", "--profile", "seed", "--dry-run", "--allow-random-vgg",
                "--storage", str(tmp_path / "rr")], tmp_path)  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.startswith("error: profiles.seed.data of 'loss-weights' data/ffhq")
    assert "would stop --gpus-per-trial 1" in out.stdout
    # 10 epochs over half of 56,000 training images with all losses (the slowest weights)
    assert "  size 160, batch 8, all: 24 trial(s) × " in out.stdout
    assert "280,000 train img at 55.9 img/s (table)" in out.stdout
    assert "warm start:" in out.stdout and "seed document" in out.stdout
    assert "searched values at their largest" in out.stdout


def test_interpolated_sizes_say_so(tmp_path):
    data = _manifest(tmp_path / "ffhq", {s: (1000, 200) for s in (160, 256, 384, 512)})
    out = _run(["--study", "ref-is-gt", "--profile", "seed", "--data", str(data), "--dry-run",
                "--set", "size=320", "--set", "batch_size=2",
                "--storage", str(tmp_path / "rr")], tmp_path)  # fmt: skip
    assert "size 320, batch 2, rec" in out.stdout, out.stdout + out.stderr
    assert "(interpolated by pixels)" in out.stdout and "linear in pixels" in out.stdout


def test_measure_needs_a_dry_run_and_cuda(tmp_path):
    out = _run(["--study", "train-time", "--measure"], tmp_path)
    assert out.returncode == 2 and "--measure: only with --dry-run" in out.stderr
    out = _run(["--study", "train-time", "--measure", "--dry-run"], tmp_path)
    assert out.returncode == 2 and "--measure: no CUDA GPU" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="--measure times steps on a CUDA GPU"
)
def test_measure_times_the_trial_configs_on_this_gpu(tmp_path):
    from tune.study.estimate import measure_figures

    spec = {
        "description": "tiny",
        "objectives": [{"metric": "val_psnr", "mode": "max"}],
        "config": {"n_feats": 8, "num_res_blocks": "1+1+1+1", "epochs": 1, "per_w": 0.01},
        "cases": [{"size": 32, "batch_size": 2}, {"size": 64, "batch_size": 2}],
        "profiles": {"seed": {"gpus_per_trial": 1}, "demo": {}},
    }
    path = tmp_path / "e.yaml"
    path.write_text(json.dumps({"studies": {"tiny": spec}}))
    study = load_study(path, "tiny", "seed")
    figures = measure_figures(study, warmup=1, steps=2)
    kinds = {(f.size, f.losses) for f in figures.rows}
    assert kinds == {(s, k) for s in (32, 64) for k in ("rec", "all", "infer")}
    assert all(f.img_s > 0 for f in figures.rows)
    assert all(f.peak_gib and f.peak_gib > 0 for f in figures.rows if f.losses != "infer")
    e = estimate.estimate_study(study, _cluster(gpus=1), sets=[figures])
    assert [t.how for t in e.trials] == ["table", "table"]
    assert "measured" in e.speedup and "(--measure)" in "\n".join(e.lines())
