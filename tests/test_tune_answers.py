"""The answers' wording for the cases the kind tests in test_tune_report.py do not reach."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ttsr import names
from tune.reporting import kinds
from tune.reporting.data import TrialRecord, frames, make_data
from tune.study.studies import load_study

SHIPPED = Path(__file__).resolve().parent.parent / "experiments.yaml"


def _data(study, records, tmp_path):
    trials, epochs = frames(records)
    keys = list(dict.fromkeys(k for r in records for k in r.params))
    return make_data(trials, epochs, study, param_keys=keys, out_dir=tmp_path)


def _history(psnr, perceptual=None, bicubic=22.0):
    row = {names.EPOCH: 1, names.VAL_PSNR: psnr, names.BICUBIC_PSNR: bicubic}
    if perceptual is not None:
        row[names.VAL_LPIPS_PROXY] = perceptual
    return [{names.EPOCH: 0, names.VAL_PSNR: 10.0, names.BICUBIC_PSNR: bicubic}, row]


def test_stop_signal_reads_the_loop_s_details():
    d = names.STOP_DIVERGED
    assert kinds.stop_signal(d, "non-finite training loss by step 12 (epoch 1)") == (
        "non-finite loss"
    )
    assert kinds.stop_signal(d, "output collapsed: 97% of SR values saturated") == (
        "collapsed output"
    )
    assert kinds.stop_signal(d, "val_psnr 12.00 dB at epoch 3 fell more than 3 dB") == (
        "PSNR floor"
    )
    assert kinds.stop_signal(d, "val_psnr is nan at epoch 2") == "non-finite PSNR"
    assert kinds.stop_signal(d, "something new") == "diverged"
    assert kinds.stop_signal("patience", "no improvement") == "patience"
    assert kinds.stop_signal(None, None) == "unknown"


def test_bicubic_verdict():
    assert kinds.bicubic_verdict(0.3) == "beats bicubic by 0.30 dB"
    assert kinds.bicubic_verdict(-2.8) == "does NOT beat bicubic (2.80 dB below)"
    assert kinds.bicubic_verdict(0.0) == "does NOT beat bicubic (0.00 dB below)"
    assert kinds.bicubic_verdict(None) == "has no bicubic PSNR to compare with"


def test_tradeoff_without_a_reconstruction_only_configuration(tmp_path):
    study = load_study(SHIPPED, "loss-weights", "demo")
    records = [
        TrialRecord("a", "TERMINATED", {"per_w": 0.01, "tpl_w": 0.0, "adv_w": 0.0},
                    _history(24.0, 0.3)),
        TrialRecord("b", "TERMINATED", {"per_w": 0.0, "tpl_w": 0.0, "adv_w": 0.01},
                    _history(23.0, 0.2)),
    ]  # fmt: skip
    text = kinds.tradeoff(_data(study, records, tmp_path))
    assert text.startswith("No reconstruction-only configuration (per_w = tpl_w = adv_w = 0) ran")
    assert "2 of 2 configurations are on the Pareto front" in text
    assert "its highest-PSNR point (per_w=0.01) reaches 24.00 dB" in text


def test_tradeoff_when_reconstruction_only_is_the_whole_front(tmp_path):
    study = load_study(SHIPPED, "loss-weights", "demo")
    records = [
        TrialRecord("a", "TERMINATED", {"per_w": 0.0, "tpl_w": 0.0, "adv_w": 0.0},
                    _history(25.0, 0.2)),
        TrialRecord("b", "TERMINATED", {"per_w": 0.01, "tpl_w": 0.0, "adv_w": 0.0},
                    _history(24.0, 0.3)),
    ]  # fmt: skip
    text = kinds.tradeoff(_data(study, records, tmp_path))
    assert text.endswith(
        "no weights trade PSNR for a lower val_perceptual: it is the whole front; per_w=0.01 is "
        "worse on both: -1.00 dB and 50.0% higher val_perceptual (val_perceptual 0.3000 vs "
        "0.2000; single seed: spread unknown)."
    )  # the dominated configuration is still named, with its significance


def test_reference_without_extra_modes_says_it_is_not_measured(tmp_path):
    study = load_study(SHIPPED, "ref-is-gt", "demo")
    study = replace(study, config={**study.config, "ref_mode": "gt", "val_ref_modes": []})
    data = _data(study, [TrialRecord("a", "TERMINATED", {}, _history(21.0))], tmp_path)
    assert kinds.reference(data).startswith(
        "Validated only with ground-truth references: how much of the 21.00 dB comes from "
        "copying the reference is not measured"
    )


def test_a_study_without_a_report_kind_answers_with_its_best_trial(tmp_path):
    study = replace(load_study(SHIPPED, "ref-is-gt", "demo"), report_kind=None)
    records = [
        TrialRecord("a", "TERMINATED", {"lr": 1e-4}, _history(21.0)),
        TrialRecord("b", "TERMINATED", {"lr": 1e-3}, _history(23.0)),
    ]
    from tune.report import build

    report = build(records, study, tmp_path)
    assert report.answer == "Best trial lr=0.001: 23.00 dB at epoch 1; it beats bicubic by 1.00 dB."
    assert {p.name for p in report.files if p.suffix == ".png"} == {"curves.png"}


def test_scaling_names_what_else_differs_between_the_settings(tmp_path):
    study = load_study(SHIPPED, "resolution", "demo")
    records = []
    for size, batch, steps in ((32, 4, 540), (64, 2, 1080)):
        for seed in (0, 1):
            history = _history(24.0 + size / 100 + seed / 100)
            history[-1].update({names.STEP: steps, names.IMAGES_SEEN: 2160})
            params = {"batch_size": batch, "size": size, "seed": seed}
            records.append(TrialRecord(f"{size}-{seed}", "TERMINATED", params, history))
    text = kinds.scaling(_data(study, records, tmp_path))
    assert (
        "Not a clean comparison: the settings also differ in batch_size (2, 4) and optimiser "
        "steps (540 to 1,080) for the same 2,160 images seen, so the change cannot be put on "
        "size alone."
    ) in text


def test_diverged_trials_are_named_with_what_their_group_means_do(tmp_path):
    study = load_study(SHIPPED, "dataset-fraction", "demo")
    ok = _history(25.0)
    ok[-1][names.BEST_EPOCH] = 1
    bad = _history(25.0)
    bad[-1].update({
        names.STOP_REASON: names.STOP_DIVERGED, names.STOP_SIGNAL: "psnr_floor",
        names.BEST_EPOCH: 1, names.STOP_DETAIL: "val_psnr fell more than 3 dB below its best",
    })  # fmt: skip
    records = [
        TrialRecord("a", "TERMINATED", {"fraction": 0.25, "seed": 0}, ok),
        TrialRecord("b", "TERMINATED", {"fraction": 0.25, "seed": 1}, bad),
    ]
    data = _data(study, records, tmp_path)
    assert kinds.diverged_note(data) == (
        "Diverged: fraction=0.25 · seed 1 (PSNR floor at epoch 1, kept epoch 1). Included in "
        "their configurations' means with the kept epoch's values (the last epoch before the "
        "divergence check fired)."
    )
    assert kinds.diverged_note(_data(study, records[:1], tmp_path)) == ""


def test_the_kept_trial_is_the_best_seed_of_the_best_configuration(tmp_path):
    from tune.report import best_trial

    study = load_study(SHIPPED, "dataset-fraction", "demo")
    # fraction 0.5 has the single best seed (27.0) but the lower mean (25.5 vs 26.4)
    psnrs = {(0.5, 0): 27.0, (0.5, 1): 24.0, (1.0, 0): 26.5, (1.0, 1): 26.3}
    records = [
        TrialRecord(f"{f}-{s}", "TERMINATED", {"fraction": f, "seed": s}, _history(p))
        for (f, s), p in psnrs.items()
    ]
    best = best_trial(_data(study, records, tmp_path))
    assert best["trial_id"] == "1.0-0" and best["label"] == "fraction=1 · seed 0"
    speed = load_study(SHIPPED, "train-time", "demo")
    assert best_trial(_data(speed, records, tmp_path)) == {}  # a speed study keeps no model
