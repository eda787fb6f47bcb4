"""Disk faults: a checkpoint write that dies half-way (an exception, or SIGKILL of the writing
process) never corrupts the previous checkpoint. Unwritable output paths: test_bad_input.py
(``train-unwritable-out``) and tests/test_tune_run.py (``--storage FILE/sub``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import env


def _model_and_config():
    from ttsr.model import RANDOM_VGG, TTSR, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(n_feats=4, num_res_blocks=(1, 1, 1, 1))
    return TTSR(config, vgg=RANDOM_VGG), config


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_save_checkpoint_failing_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    from ttsr import checkpoint

    model, config = _model_and_config()
    path = tmp_path / "model.pt"
    checkpoint.save_checkpoint(path, model_state=model.reference_state_dict(), model_config=config)
    before = path.read_bytes()

    def half_then_fail(obj, f, *args, **kwargs):
        f.write(before[: len(before) // 2])  # half a file is on disk when the "disk" fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save_checkpoint(path, model_state={}, model_config=config)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temp file left behind
    checkpoint.load_model(path)  # still loads


def test_checkpoint_dir_write_failing_mid_way_keeps_the_previous_dir(tmp_path):
    from ttsr.atomic import write_dir_atomically
    from ttsr.checkpoint import resolve_checkpoint_dir

    final = tmp_path / "checkpoints" / "latest"
    write_dir_atomically(final, lambda d: (d / "state.pt").write_bytes(b"epoch 1" * 100))
    before = _files(final)

    def half_then_fail(d: Path) -> None:
        (d / "state.pt").write_bytes(b"epoch 2")  # partial
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        write_dir_atomically(final, half_then_fail)
    assert _files(final) == before
    assert [p.name for p in final.parent.iterdir()] == ["latest"]  # temp dir cleaned up
    assert resolve_checkpoint_dir(final) == final


def test_death_between_the_two_renames_finds_the_old_copy(tmp_path):
    """The swap renames latest -> .latest.old, then tmp -> latest: dying between them leaves
    only the old copy, which resume finds."""
    from ttsr.checkpoint import resolve_checkpoint_dir

    old = tmp_path / ".latest.old"
    old.mkdir()
    (old / "state.pt").write_bytes(b"complete")
    assert resolve_checkpoint_dir(tmp_path / "latest") == old
    with pytest.raises(FileNotFoundError, match="no state.pt"):
        resolve_checkpoint_dir(tmp_path / "nothing")


WRITER = """
import sys, time
from pathlib import Path
from ttsr.atomic import write_dir_atomically

final, phase = Path(sys.argv[1]), sys.argv[2]

def write(d):
    (d / "model.pt").write_bytes(b"new" * 1000)
    with open(d / "state.pt", "wb") as f:
        f.write(b"half of the new state")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)  # SIGKILL arrives here

def write_old(d):
    (d / "state.pt").write_bytes(b"old" * 1000)

write_dir_atomically(final, write_old if phase == "first" else write)
"""


def test_sigkill_mid_checkpoint_write_leaves_the_previous_checkpoint(tmp_path):
    from ttsr.checkpoint import resolve_checkpoint_dir

    final = tmp_path / "checkpoints" / "latest"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    subprocess.run([sys.executable, str(script), str(final), "first"], env=env(), check=True)
    before = _files(final)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(final), "second"],
        env=env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert _files(final) == before  # the previous checkpoint, byte for byte
    assert resolve_checkpoint_dir(final) == final
    # the killed write left only a hidden temp dir, which is never mistaken for a checkpoint
    leftovers = [p.name for p in final.parent.iterdir() if p.name != "latest"]
    from ttsr.atomic import TMP_MARKER

    assert all(name.startswith(f".latest{TMP_MARKER}") for name in leftovers), leftovers
