"""Storage helpers: paths made absolute, small JSON files, what --resume may continue."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tune.execution import storage
from tune.study.preflight import PreflightError


def test_resolve_and_json_round_trip(tmp_path):
    assert storage.resolve_storage("rel") == str(Path("rel").resolve())
    assert storage.resolve_storage("s3://b/x/") == "s3://b/x"
    storage.write_json(str(tmp_path / "a" / "p.json"), {"k": 1})
    assert storage.read_json(str(tmp_path / "a" / "p.json")) == {"k": 1}
    assert storage.read_json(str(tmp_path / "a" / "missing.json")) is None
    assert not list((tmp_path / "a").glob("*.tmp"))  # written atomically, nothing left over


def test_check_storage_without_creating(tmp_path):
    target = tmp_path / "new" / "deeper"
    storage.check_storage(str(target), create=False)
    assert not (tmp_path / "new").exists()  # a dry run's check creates nothing
    (tmp_path / "FILE").write_text("x")
    with pytest.raises(PreflightError, match="is not a writable directory"):
        storage.check_storage(str(tmp_path / "FILE" / "sub"), create=False)
    storage.check_storage(str(target), create=True)
    assert target.is_dir() and not list(target.iterdir())


def test_parent_info_names_the_missing_file(tmp_path):
    with pytest.raises(PreflightError, match=f"--resume {tmp_path}: no {storage.PARENT_FILE}"):
        storage.read_parent_info(str(tmp_path))
    storage.write_json(f"{tmp_path}/{storage.PARENT_FILE}", {"run_id": "r"})
    assert storage.read_parent_info(str(tmp_path)) == {"run_id": "r"}


def test_resume_latest_needs_an_earlier_invocation(tmp_path):
    with pytest.raises(PreflightError, match="--resume: no earlier invocation"):
        storage.find_resume_path("latest", str(tmp_path / "s"))
    with pytest.raises(PreflightError, match="give the experiment path"):
        storage.find_resume_path("latest", "s3://bucket/results/s")


def test_latest_invocation_is_the_last_written_one(tmp_path, capsys):
    """What `--resume latest` continues and `tune/report.py` reports without --run."""
    from tune import report

    assert storage.latest_invocation(tmp_path) is None
    assert report.main(["--study", "s", "--storage", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --study s: no results under {tmp_path / 's'}"
    for i, name in enumerate(["b", "a", "c"]):
        storage.write_json(f"{tmp_path}/{name}/{storage.PARENT_FILE}", {"run_id": name})
        os.utime(tmp_path / name / storage.PARENT_FILE, (1e9 + i, 1e9 + i))
    (tmp_path / "d").mkdir()  # newest, but not an invocation of tune/run.py
    (tmp_path / "a" / "report").mkdir()  # a report of an older invocation written just now
    assert storage.latest_invocation(tmp_path) == tmp_path / "c"
    os.utime(tmp_path / "a" / storage.PARENT_FILE, (2e9, 2e9))
    assert storage.latest_invocation(tmp_path) == tmp_path / "a"


@pytest.mark.parametrize("state", ['{"trial_data": [["', ""])  # cut short; empty
def test_resume_refuses_an_experiment_state_that_cannot_be_read(tmp_path, state):
    """Tune's own restore logs such a state's error and starts the study over (a trial with no
    parameters, exit 0): --resume refuses it in one line instead, naming the experiment."""
    root = tmp_path / "results" / "s"
    experiment = root / "s-20260101-000000"
    experiment.mkdir(parents=True)
    (experiment / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    (experiment / "experiment_state-2026-01-01_00-00-00.json").write_text(state)
    with pytest.raises(PreflightError) as caught:
        storage.find_resume_path(str(experiment), str(root))
    line = str(caught.value)
    assert line.startswith(f"--resume {experiment}: Tune's experiment state there cannot be read")
    assert "without --resume" in line and "\n" not in line
