"""Security defaults: checkpoints load with weights_only=True, YAML through a safe loader, no
shell built from strings, --resume only inside the configured storage, local servers on
127.0.0.1 (the local Ray study's ports: test_trial_faults.py; compose: tests/test_docker.py)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

from .conftest import REPO, TINY_FLAGS, TRAIN, assert_clean_error, run


class Payload:
    """Unpickling this runs ``os.mkdir(marker)`` -- if the loader allows arbitrary objects."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _malicious(path: Path, marker: Path, *, as_state: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": "ttsr-tune/1", "model": {"x": Payload(marker)}, "model_config": {}}
    if as_state:
        obj = {"epoch": 1, "model": {"x": Payload(marker)}, "config": {}}
    torch.save(obj, path)
    return path


def test_load_checkpoint_refuses_a_malicious_pickle(tmp_path):
    from ttsr.checkpoint import CheckpointError, load_checkpoint, load_model

    marker = tmp_path / "pwned"
    ckpt = _malicious(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match="evil.pt: not a PyTorch checkpoint"):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_model(ckpt)
    assert not marker.exists()
    # the same file through an unsafe loader would run the payload: the test can fail
    torch.load(ckpt, weights_only=False)
    assert marker.exists()


def test_train_resume_refuses_a_malicious_state_without_running_it(tmp_path):
    from ttsr.checkpoint import load_state

    marker = tmp_path / "pwned"
    state = _malicious(tmp_path / "ckpt" / "state.pt", marker, as_state=True)
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|unsupported"):
        load_state(state.parent)
    assert not marker.exists()


def test_train_cli_resume_malicious_state_one_line(tmp_path):
    marker = tmp_path / "pwned"
    state = _malicious(tmp_path / "ckpt" / "state.pt", marker, as_state=True)
    out = run([*TRAIN, *TINY_FLAGS, "--resume", str(state.parent)], cwd=tmp_path, timeout=120)
    assert not marker.exists()
    assert_clean_error(out, "--resume")


def test_infer_refuses_a_malicious_checkpoint(tmp_path):
    import numpy as np
    from PIL import Image

    marker = tmp_path / "pwned"
    ckpt = _malicious(tmp_path / "evil.pt", marker)
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "lr.png")
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "ref.png")
    argv = ["-m", "ttsr.infer", "--checkpoint", str(ckpt), "--lr", str(tmp_path / "lr.png")]
    argv += ["--ref", str(tmp_path / "ref.png"), "--out", str(tmp_path / "sr.png")]
    import sys

    out = run([sys.executable, *argv], cwd=tmp_path, timeout=120)
    assert_clean_error(out, "evil.pt")
    assert not marker.exists() and not (tmp_path / "sr.png").exists()


YAML_TAG = "studies: !!python/object/apply:os.mkdir ['{marker}']\n"


def test_experiments_yaml_python_tag_is_rejected(tmp_path):
    from tune.study.studies import StudyError, StudyFile

    marker = tmp_path / "pwned"
    path = tmp_path / "exp.yaml"
    path.write_text(YAML_TAG.format(marker=marker))
    with pytest.raises(StudyError, match="exp.yaml: not valid YAML"):
        StudyFile.load(path)
    assert not marker.exists()


def test_train_config_yaml_python_tag_is_rejected(tmp_path):
    from ttsr.config import ConfigError
    from ttsr.train.cli import load_yaml

    marker = tmp_path / "pwned"
    path = tmp_path / "train.yaml"
    path.write_text(f"!!python/object/apply:os.mkdir ['{marker}']\n")
    with pytest.raises(ConfigError, match="train.yaml is not valid YAML"):
        load_yaml(path)
    assert not marker.exists()


def _python_files() -> list[Path]:
    return sorted(p for pkg in ("ttsr", "tune") for p in (REPO / pkg).rglob("*.py"))


def _shell_calls(tree: ast.AST) -> list[str]:
    """Calls that hand a string to a shell: shell=True anywhere, os.system/os.popen, and the
    os.exec*p*/spawn* family with a shell."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg == "shell" and not (
                isinstance(kw.value, ast.Constant) and kw.value.value is False
            ):
                found.append(f"line {node.lineno}: shell={ast.unparse(kw.value)}")
        name = ast.unparse(node.func)
        if name in ("os.system", "os.popen", "system", "popen", "commands.getoutput"):
            found.append(f"line {node.lineno}: {name}(...)")
    return found


def test_no_shell_commands_built_from_strings():
    files = _python_files()
    assert len(files) > 20  # the scan sees the packages
    offenders = {
        str(p.relative_to(REPO)): calls
        for p in files
        if (calls := _shell_calls(ast.parse(p.read_text(), filename=str(p))))
    }
    assert not offenders, offenders
    # the scanner itself finds what it looks for
    bad = "import os, subprocess\nos.system('ls ' + x)\nsubprocess.run(cmd, shell=True)\n"
    assert len(_shell_calls(ast.parse(bad))) == 2


def test_resume_help_says_it_loads_pickled_state(tmp_path):
    import sys

    out = run([sys.executable, str(REPO / "tune" / "run.py"), "--help"], cwd=tmp_path, timeout=60)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "--resume" in text and "pickled state" in text and "inside --storage" in text


def test_resume_accepts_only_paths_inside_the_study_storage(tmp_path):
    from tune.execution.storage import find_resume_path
    from tune.study.preflight import PreflightError

    study_root = tmp_path / "results" / "s"
    inside = study_root / "s-20260101-000000"
    inside.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (study_root / "link").symlink_to(outside, target_is_directory=True)
    for path in (
        outside,  # another directory
        study_root / ".." / ".." / "elsewhere",  # a traversal that leaves the storage
        study_root / "link",  # a symlink inside the storage that points outside
        tmp_path / "results" / "s-other",  # a sibling whose name starts with the study's
    ):
        with pytest.raises(PreflightError, match="not inside this study's storage"):
            find_resume_path(str(path), str(study_root))
    # inside, but not a Tune experiment: refused for that reason instead
    with pytest.raises(PreflightError, match="no Tune experiment state"):
        find_resume_path(str(inside), str(study_root))


def test_mlflow_ui_hint_binds_localhost():
    from tune.study.preflight import mlflow_ui_command

    assert "--host 127.0.0.1" in mlflow_ui_command("sqlite:////tmp/x/mlflow.db")
