"""ttsr/data/loading.py: how many loader workers a run gets, and the training loader of a run:
one DataLoader whose workers persist across rounds while its sampler moves to each round's
steps (the same batches as loading in the main process)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from ttsr.config import TrainConfig
from ttsr.data import loading
from ttsr.data.loading import MAX_AUTO_WORKERS, PREFETCH_FACTOR, loader_options
from ttsr.train.setup import start_run

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
pytestmark = pytest.mark.filterwarnings("ignore:VGG19 ImageNet weights not found")


@pytest.fixture
def cpus(monkeypatch):
    """Pretend the process may run on ``n`` CPUs, without OMP_NUM_THREADS unless set."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    def set_cpus(n: int) -> None:
        monkeypatch.setattr(loading.os, "sched_getaffinity", lambda pid: set(range(n)))

    return set_cpus


def test_auto_workers_are_none_on_the_cpu_and_the_allotted_cpus_minus_one_on_cuda(
    cpus, monkeypatch
):
    cpus(16)
    assert loading.resolve_num_workers(None, CPU) == 0
    assert loading.resolve_num_workers(None, CUDA) == MAX_AUTO_WORKERS  # capped
    cpus(4)
    assert loading.resolve_num_workers(None, CUDA) == 3
    cpus(1)
    assert loading.resolve_num_workers(None, CUDA) == 1  # never 0 on CUDA: decoding off the step
    # Ray sets OMP_NUM_THREADS to a trial's CPUs: packed trials share the node's cores.
    cpus(16)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert loading.resolve_num_workers(None, CUDA) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert loading.resolve_num_workers(None, CUDA) == MAX_AUTO_WORKERS
    # An explicit count is used as given, on any device.
    assert loading.resolve_num_workers(2, CPU) == 2
    assert loading.resolve_num_workers(0, CUDA) == 0


def test_loader_options_persist_and_prefetch_only_with_workers(cpus):
    cpus(4)
    assert loader_options(None, CPU) == {"num_workers": 0, "pin_memory": False}
    assert loader_options(None, CUDA) == {
        "num_workers": 3,
        "pin_memory": True,
        "persistent_workers": True,
        "prefetch_factor": PREFETCH_FACTOR,
    }
    assert loader_options(0, CUDA) == {"num_workers": 0, "pin_memory": True}


def test_num_workers_defaults_to_auto_and_rejects_negatives():
    assert TrainConfig().num_workers is None
    assert TrainConfig(num_workers=3).num_workers == 3
    with pytest.raises(ValueError, match="num_workers: must be >= 0"):
        TrainConfig(num_workers=-1)


def _config(tmp_path, workers: int) -> TrainConfig:
    """5 training items in steps of 2 (2 steps per pass), a budget of 5 steps in 2 rounds."""
    values: dict[str, Any] = dict(
        size=32,
        batch_size=2,
        fraction=0.05,
        val_limit=1,
        n_feats=8,
        num_res_blocks="1+1+1+1",
        epochs=2,
        budget_steps=5,
        device="cpu",
        out_dir=str(tmp_path / f"run-{workers}"),
        sample_every=0,
        num_workers=workers,
    )
    return TrainConfig.from_dict(values)


def _rounds(run, workers_seen: list) -> list[list[torch.Tensor]]:
    out = []
    for epoch in (1, 2):
        batches = []
        for batch in run.batches(epoch):
            batches.append(batch["HR"])
            run.state.step += 1
        out.append(batches)
        iterator = run.train_loader._iterator  # private, but what "persistent" means
        workers_seen.append([w.pid for w in iterator._workers] if iterator is not None else [])
    return out


def test_one_training_loader_per_run_with_persistent_workers(tmp_path):
    serial_run, parallel_run = start_run(_config(tmp_path, 0)), start_run(_config(tmp_path, 2))
    assert serial_run.batches(1) is serial_run.batches(2)  # one loader, moved between rounds
    assert parallel_run.train_loader.persistent_workers
    assert not parallel_run.train_loader.pin_memory  # CPU
    no_workers: list = []
    workers: list = []
    serial = _rounds(serial_run, no_workers)
    parallel = _rounds(parallel_run, workers)
    assert [len(r) for r in serial] == [2, 3]  # rounds end at steps 2 and 5
    for a, b in zip(serial, parallel, strict=True):
        assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert no_workers == [[], []]
    assert len(workers[0]) == 2 and workers[0] == workers[1]  # the same processes, both rounds
    loader = parallel_run.evaluator.loader  # one loader for every reference mode
    assert loader.num_workers == 2 and loader.persistent_workers


def test_validation_reads_every_reference_mode_through_one_worker_pool(tmp_path):
    """Two reference modes, 2 workers: one loader, one pool of 2 processes serving both modes,
    across validations; the metrics equal those of loading in the main process."""
    from ttsr.train.evaluate import Evaluator
    from ttsr.train.trainer import build_trainer

    def evaluator(workers: int) -> Evaluator:
        config = _config(tmp_path, workers).replace(val_ref_modes=["other"], val_limit=3)
        return Evaluator(config)

    trainer = build_trainer(_config(tmp_path, 0))
    serial, parallel = evaluator(0), evaluator(2)
    assert [mode for mode, _ in parallel.batches()] == ["gt", "gt", "other", "other"]
    assert [mode for mode, _ in parallel.batches("other")] == ["other", "other"]
    pools = []
    for _ in range(2):
        expected, got = serial(trainer).metrics, parallel(trainer).metrics
        assert got == expected and "val_psnr_other" in got
        pools.append([w.pid for w in parallel.loader._iterator._workers])  # private: the pool
    assert len(pools[0]) == 2 and pools[0] == pools[1]
    assert parallel.bicubic_psnr(trainer.device) == serial.bicubic_psnr(trainer.device)
