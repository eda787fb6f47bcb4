"""Bad input to the real CLIs, table-driven: each case runs the command's ``main`` in-process
(``in_process``: the CLIs' own processes are tested in test_cli_errors.py) and checks a non-zero
exit, one ``error:`` line naming the culprit as stderr's last line, no
traceback, and no new file or folder anywhere in the test's directory (nothing half-written).

Cases already covered by tests/test_tune_run.py::test_bad_input_exits_2_with_one_line (unknown
study, sqlite dir missing, unknown MLflow scheme, unreachable MLflow/Ray, unwritable --storage,
--max-epochs 0, missing --data, --resume with nothing to resume) are not repeated here; the table
in docs/RELIABILITY.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from .conftest import (
    DATA,
    INFER,
    RUN,
    TINY,
    TINY_FLAGS,
    TRAIN,
    assert_clean_error,
    run,
    snapshot,
    tiny_study,
    write_experiments,
)


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]  # "{T}" is replaced by the test's directory
    culprit: str  # must appear in stderr's last line
    xfail: str | None = None  # a product gap, with the proposed fix


def _study(**over: Any) -> dict[str, Any]:
    return {"s": tiny_study(**over)}


def _config(**over: Any) -> dict[str, Any]:
    return _study(config={**TINY, **over})


# experiments.yaml variants: name -> studies mapping (or raw text for malformed YAML)
EXPERIMENTS: dict[str, Any] = {
    "unknown_key": _config(lrr=1e-4),
    "wrong_type": _config(epochs="three"),
    "negative_lr": _config(lr=-1e-4),
    "fraction_0": _config(fraction=0.0),
    "fraction_gt_1": _config(fraction=1.5),
    "size_not_div_4": _config(size=30),
    "empty_search": _study(search={}),
    "empty_choice": _study(search={"lr": {"choice": []}}),
    "unknown_study_key": _study(schedular="fifo"),
    "bad_objective": _study(objectives=[{"metric": "val_psnrr", "mode": "max"}]),
    "malformed": "studies:\n  s: {description: [unclosed\n",
    "python_tag": "studies: !!python/object/apply:os.system ['touch {T}/pwned']\n",
}


def _tune(variant: str, *extra: str) -> list[str]:
    return [
        *RUN,
        "--study",
        "s",
        "--experiments",
        f"{{T}}/exp_{variant}.yaml",
        *_tune_out(),
        *extra,
    ]


def _tune_out() -> list[str]:
    return ["--storage", "{T}/results", "--mlflow-uri", "sqlite:///{T}/mlflow.db"]


_TRAIN = [*TRAIN, *TINY_FLAGS, "--epochs", "1"]
_INFER_OK = ["--lr", "{T}/lr.png", "--ref", "{T}/ref.png", "--out", "{T}/out/sr.png"]

CASES = [
    # --- experiments.yaml through tune/run.py ---------------------------------------------------
    Case("tune-unknown-config-key", _tune("unknown_key"), "lrr"),
    Case("tune-wrong-type", _tune("wrong_type"), "epochs"),
    Case("tune-negative-lr", _tune("negative_lr"), "config.lr"),
    Case("tune-fraction-0", _tune("fraction_0"), "config.fraction"),
    Case("tune-fraction-gt-1", _tune("fraction_gt_1"), "config.fraction"),
    Case("tune-size-not-div-4", _tune("size_not_div_4"), "config.size"),
    Case("tune-empty-search", _tune("empty_search"), "search"),
    Case("tune-empty-choice", _tune("empty_choice"), "search.lr.choice"),
    Case("tune-unknown-study-key", _tune("unknown_study_key"), "schedular"),
    Case("tune-unknown-metric", _tune("bad_objective"), "objectives[0].metric"),
    Case("tune-malformed-yaml", _tune("malformed"), "not valid YAML at line"),
    Case("tune-python-yaml-tag", _tune("python_tag"), "exp_python_tag.yaml"),
    Case(
        "tune-missing-experiments",
        [*RUN, "--study", "s", "--experiments", "{T}/none.yaml", *_tune_out()],
        "none.yaml",
    ),
    Case(
        "tune-misspelled-mlflow-uri",
        [
            *RUN,
            "--study",
            "s",
            "--experiments",
            "{T}/exp_ok.yaml",
            "--storage",
            "{T}/results",
            "--mlflow-uri",
            "sqlite:/{T}/mlflow.db",
        ],
        "--mlflow-uri",
    ),
    Case(
        "tune-resume-outside-storage",
        [
            *RUN,
            "--study",
            "s",
            "--experiments",
            "{T}/exp_ok.yaml",
            *_tune_out(),
            "--resume",
            "{T}/elsewhere",
        ],
        "--resume",
    ),
    Case(
        "tune-negative-gpus",
        _tune("ok", "--gpus-per-trial", "-1"),
        "--gpus-per-trial",
    ),
    # --- python -m ttsr.train -----------------------------------------------------------------
    Case("train-negative-lr", [*_TRAIN, "--lr", "-1", "--out", "{T}/out"], "lr"),
    Case("train-fraction-0", [*_TRAIN, "--fraction", "0", "--out", "{T}/out"], "fraction"),
    Case("train-fraction-gt-1", [*_TRAIN, "--fraction", "1.5", "--out", "{T}/out"], "fraction"),
    Case("train-size-not-div-4", [*_TRAIN, "--size", "30", "--out", "{T}/out"], "size"),
    Case(
        "train-malformed-config",
        [*_TRAIN, "--config", "{T}/bad.yaml", "--out", "{T}/out"],
        "bad.yaml",
    ),
    Case(
        "train-unknown-config-key",
        [*_TRAIN, "--config", "{T}/unknown.yaml", "--out", "{T}/out"],
        "lrr",
    ),
    Case(
        "train-python-yaml-tag",
        [*_TRAIN, "--config", "{T}/tag.yaml", "--out", "{T}/out"],
        "tag.yaml",
    ),
    Case(
        "train-resume-random-file",
        [*_TRAIN, "--resume", "{T}/random.pt", "--out", "{T}/out"],
        "--resume",
    ),
    Case(
        "train-missing-data-dir",
        [*_TRAIN, "--data", "{T}/no_such_dir", "--out", "{T}/out"],
        "no_such_dir",
    ),
    Case(
        "train-empty-data-dir",
        [*_TRAIN, "--data", "{T}/empty", "--out", "{T}/out"],
        "empty",
    ),
    Case(
        "train-unwritable-out",
        [*_TRAIN, "--out", "{T}/FILE/sub"],
        "--out",
    ),
    # --- python -m ttsr.infer -----------------------------------------------------------------
    Case(
        "infer-random-file-checkpoint",
        [*INFER, "--checkpoint", "{T}/random.pt", *_INFER_OK],
        "random.pt",
    ),
    Case(
        "infer-other-model-checkpoint",
        [*INFER, "--checkpoint", "{T}/other.pt", *_INFER_OK],
        "other.pt",
    ),
    Case(
        "infer-zero-byte-lr",
        [
            *INFER,
            "--checkpoint",
            "{T}/ttsr.pt",
            "--lr",
            "{T}/zero.png",
            "--ref",
            "{T}/ref.png",
            "--out",
            "{T}/out/sr.png",
        ],
        "zero.png",
    ),
    Case(
        "infer-ref-too-small",
        [
            *INFER,
            "--checkpoint",
            "{T}/ttsr.pt",
            "--lr",
            "{T}/lr.png",
            "--ref",
            "{T}/tiny.png",
            "--out",
            "{T}/out/sr.png",
        ],
        "reference",
    ),
    Case(
        "infer-file-vs-folder",
        [
            *INFER,
            "--checkpoint",
            "{T}/ttsr.pt",
            "--lr",
            "{T}/lr.png",
            "--ref",
            "{T}/empty",
            "--out",
            "{T}/out/sr.png",
        ],
        "--ref",
    ),
    # --- python -m ttsr.data prepare -----------------------------------------------------------
    Case(
        "data-missing-src",
        [*DATA, "prepare", "--src", "{T}/no_such_dir", "--out", "{T}/out"],
        "--src",
    ),
    Case("data-empty-src", [*DATA, "prepare", "--src", "{T}/empty", "--out", "{T}/out"], "--src"),
    Case(
        "data-only-corrupt-images",
        [*DATA, "prepare", "--src", "{T}/corrupt_only", "--out", "{T}/out", "--sizes", "32"],
        "no usable images",
    ),
    Case(
        "data-size-not-div-4",
        [*DATA, "prepare", "--src", "{T}/corrupt_only", "--out", "{T}/out", "--sizes", "30"],
        "--sizes",
    ),
]


def _workspace(root: Path) -> None:
    """Every file the cases point at."""
    for name, studies in EXPERIMENTS.items():
        path = root / f"exp_{name}.yaml"
        if isinstance(studies, str):
            path.write_text(studies.replace("{T}", str(root)))
        else:
            write_experiments(path, studies)
    write_experiments(root / "exp_ok.yaml", _study())
    (root / "FILE").write_text("a file, not a directory")
    (root / "empty").mkdir()
    (root / "elsewhere").mkdir()
    (root / "bad.yaml").write_text("epochs: [1\n")
    (root / "unknown.yaml").write_text("lrr: 0.1\n")
    (root / "tag.yaml").write_text(f"!!python/object/apply:os.system ['touch {root}/pwned']\n")
    rng = np.random.default_rng(0)
    (root / "random.pt").write_bytes(rng.bytes(4096))
    torch.save(
        {"conv.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(10)}, root / "other.pt"
    )
    from ttsr.checkpoint import save_checkpoint
    from ttsr.model import RANDOM_VGG, TTSR, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(n_feats=4, num_res_blocks=(1, 1, 1, 1))
    model = TTSR(config, vgg=RANDOM_VGG)
    save_checkpoint(root / "ttsr.pt", model_state=model.reference_state_dict(), model_config=config)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / "lr.png")
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "ref.png")
    Image.fromarray(rng.integers(0, 255, (2, 2, 3), dtype=np.uint8)).save(root / "tiny.png")
    (root / "zero.png").write_bytes(b"")
    (root / "corrupt_only").mkdir()
    (root / "corrupt_only" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(200))
    (root / "corrupt_only" / "b.jpg").write_bytes(b"")


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)])
        if c.xfail
        else pytest.param(c, id=c.id)
        for c in CASES
    ],
)
def test_bad_input_one_line_nonzero_nothing_written(case: Case, tmp_path: Path, in_process):
    _workspace(tmp_path)
    before = snapshot(tmp_path)
    argv = [a.replace("{T}", str(tmp_path)) for a in case.argv]
    out = in_process(argv, tmp_path)
    assert_clean_error(out, case.culprit.replace("{T}", str(tmp_path)))
    assert snapshot(tmp_path) == before, sorted(snapshot(tmp_path) - before)
    assert not (tmp_path / "pwned").exists()  # a !!python tag never ran


def test_table_has_at_least_20_cases():
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)


def _bad_image_folder(src: Path) -> None:
    """Photo-like images plus every kind of bad file."""
    rng = np.random.default_rng(1)
    src.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(src / f"ok{i}.png")
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8), "L").save(src / "gray.png")
    deep = rng.integers(0, 65535, (40, 40), dtype=np.uint16)
    Image.fromarray(deep).save(src / "deep16.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 4), dtype=np.uint8), "RGBA").save(
        src / "alpha.png"
    )
    (src / "zero.png").write_bytes(b"")
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + rng.bytes(300))
    full = (src / "ok0.png").read_bytes()
    (src / "truncated.png").write_bytes(full[: len(full) // 2])


@pytest.mark.slow
def test_bad_images_are_converted_or_skipped_and_training_runs_on_the_result(tmp_path):
    """`prepare` on a folder with zero-byte, corrupt, truncated, grayscale, 16-bit and RGBA
    images converts or skips (and lists) them instead of aborting; a training run on the result
    completes its epochs."""
    import json

    _bad_image_folder(tmp_path / "src")
    prepared = tmp_path / "prepared"
    out = run(
        [*DATA, "prepare", "--src", str(tmp_path / "src"), "--out", str(prepared)]
        + ["--sizes", "32", "--test-fraction", "0.3", "--workers", "1", "--no-progress"],
        cwd=tmp_path,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = json.loads((prepared / "manifest.json").read_text())
    skipped = {Path(s["path"]).name for s in manifest["skipped"]}
    assert {"zero.png", "corrupt.jpg"} <= skipped, manifest["skipped"]
    assert not {"gray.png", "deep16.png", "alpha.png"} & skipped  # converted, not dropped
    assert "zero.png" in out.stdout  # reported, not silently dropped

    train = run(
        [*TRAIN, *TINY_FLAGS, "--data", str(prepared), "--fraction", "1", "--epochs", "2"]
        + ["--out", str(tmp_path / "run")],
        cwd=tmp_path,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert "Traceback" not in train.stderr
    assert "epoch 2/2" in train.stdout
    assert (tmp_path / "run" / "checkpoints" / "latest" / "state.pt").is_file()


def _truncate_shard(prepared: Path) -> Path:
    shard = sorted(prepared.glob("size=32/train-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:200])
    return shard


def _garble_pixels(prepared: Path) -> Path:
    """A valid Parquet file whose stored PNGs keep their headers but have zeros for pixels: met
    only when training reads the images, not when the dataset opens."""
    import pyarrow.parquet as pq

    from ttsr.data.shards import write_shard

    shard = sorted(prepared.glob("size=32/test-*.parquet"))[0]
    table = pq.read_table(shard)
    meta = table.schema.metadata
    write_shard(
        shard,
        paths=table.column("path").to_pylist(),
        hashes=table.column("sha256").to_pylist(),
        images=[b[:40] + b"\0" * (len(b) - 40) for b in table.column("image").to_pylist()],
        fmt=meta[b"ttsr.format"].decode(),
        size=int(meta[b"ttsr.size"]),
    )
    return shard


def _truncate_manifest(prepared: Path) -> Path:
    path = prepared / "manifest.json"
    path.write_text(path.read_text()[:50])
    return path


@pytest.fixture(scope="module")
def prepared_32(tmp_path_factory) -> Path:
    from ttsr.data import prepare

    root = tmp_path_factory.mktemp("prepared")
    rng = np.random.default_rng(2)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / f"{i}.png")
    prepare(root, root / "out", sizes=[32], test_fraction=0.3, workers=0, progress=False)
    return root / "out"


@pytest.mark.parametrize(
    "damage, problem",
    [
        (_truncate_shard, "corrupted or truncated shard"),
        (_garble_pixels, "not a valid png image"),
        (_truncate_manifest, "corrupted or truncated manifest"),
    ],
    ids=["truncated-shard", "garbage-pixels", "truncated-manifest"],
)
def test_train_on_damaged_data_is_one_line_naming_the_file(prepared_32, tmp_path, damage, problem):
    """`python -m ttsr.train --data DIR` on a damaged prepared folder: exit 2 and one stderr line
    naming the damaged file, the problem and `ttsr.data prepare` (the fix)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(prepared_32, data)
    culprit = damage(data)
    argv = [*TRAIN, *TINY_FLAGS, "--data", str(data), "--fraction", "1", "--epochs", "1"]
    out = run([*argv, "--out", str(tmp_path / "run")], cwd=tmp_path, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    last = assert_clean_error(out, str(culprit))
    assert problem in last and "ttsr.data prepare" in last, last
    assert [line for line in out.stderr.splitlines() if line.startswith("error: ")] == [last]
