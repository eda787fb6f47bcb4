"""Storage helpers: paths made absolute, small JSON files, what --resume may continue."""

from __future__ import annotations

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
