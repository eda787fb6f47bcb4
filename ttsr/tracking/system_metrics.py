"""System metrics of one training run: a background thread samples them and logs ``system/...``.

Per sample: the host's CPU and memory (named as MLflow's own monitor names them, so the run
page's "System metrics" tab shows them), this process's CPU and memory (its DataLoader workers
included), and, through NVML, each GPU the run was given: the CUDA devices this process sees
(Ray sets ``CUDA_VISIBLE_DEVICES`` to the trial's), else only the current one, matched to NVML
by UUID. Not MLflow's built-in monitor: it samples every GPU on the host (on a shared node, the
other trials' too) and follows the fluent active run, which Tune workers do not use.

The thread never raises or blocks training: a failed sample or log call (server down) is
dropped and counted. A run gets at least one sample: the thread takes one when stopped.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PREFIX = "system/"
DEFAULT_INTERVAL = 10.0  # seconds between samples
INTERVAL_ENV = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"  # MLflow's own knob, honoured here
CPU = PREFIX + "cpu_utilization_percentage"  # the step counter on resume reads this one
MIB = 2**20


@dataclass(frozen=True)
class GpuWatch:
    """One GPU of this run: its CUDA index in this process and its NVML index on the host."""

    cuda_index: int
    nvml_index: int
    uuid: str


def default_interval(env: Mapping[str, str] = os.environ) -> float:
    try:
        value = float(env.get(INTERVAL_ENV, ""))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


def _bare_uuid(uuid: str) -> str:
    uuid = uuid.strip().lower()
    return uuid[4:] if uuid.startswith("gpu-") else uuid


def watched_gpus(
    *,
    visible: str | None,
    cuda_uuids: Sequence[str],
    current: int,
    nvml: Sequence[tuple[int, str]],
) -> list[GpuWatch]:
    """The GPUs this process was given, as (CUDA index, NVML index) pairs.

    visible: ``CUDA_VISIBLE_DEVICES`` (None = unset: then only the ``current`` device).
    cuda_uuids: the UUID of each CUDA device this process sees, in CUDA order (empty when
    unknown: then the ``visible`` entries are read as NVML indices or UUID prefixes). nvml:
    (NVML index, UUID) of every GPU on the host.
    """
    by_uuid = {_bare_uuid(u): i for i, u in nvml}
    if cuda_uuids:
        local = range(len(cuda_uuids)) if visible is not None else [current]
        bare = [(k, _bare_uuid(cuda_uuids[k])) for k in local if k < len(cuda_uuids)]
        return [GpuWatch(k, by_uuid[uuid], uuid) for k, uuid in bare if uuid in by_uuid]
    entries = [str(current)] if visible is None else [e.strip() for e in visible.split(",")]
    out = []
    for k, entry in enumerate(entries):  # CUDA stops at the first entry it cannot use
        if entry.isdigit():
            match = [(i, u) for i, u in nvml if i == int(entry)]
        elif entry.lower().startswith("gpu-"):
            match = [(i, u) for i, u in nvml if _bare_uuid(u).startswith(_bare_uuid(entry))]
        else:
            match = []
        if len(match) != 1:
            break
        out.append(GpuWatch(k, match[0][0], _bare_uuid(match[0][1])))
    return out


# --- GPU readers: the host's GPUs (index, uuid) and per-GPU numbers ---------------------------
class NvmlReader:
    """GPU numbers through NVML (``pynvml`` from nvidia-ml-py)."""

    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nvml = pynvml

    def devices(self) -> list[tuple[int, str]]:
        out = []
        for i in range(self.nvml.nvmlDeviceGetCount()):
            uuid = self.nvml.nvmlDeviceGetUUID(self.nvml.nvmlDeviceGetHandleByIndex(i))
            out.append((i, uuid.decode() if isinstance(uuid, bytes) else uuid))
        return out

    def read(self, indices: Sequence[int]) -> dict[int, dict[str, float]]:
        out = {}
        for i in indices:
            handle = self.nvml.nvmlDeviceGetHandleByIndex(i)
            memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            values = {
                "utilization_percentage": float(
                    self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                ),
                "memory_usage_megabytes": memory.used / MIB,
                "memory_usage_percentage": 100.0 * memory.used / memory.total,
            }
            try:
                values["power_usage_watts"] = self.nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            except self.nvml.NVMLError:
                pass  # not every board reports power
            out[i] = values
        return out


def gpu_reader() -> NvmlReader | None:
    """NVML's view of this host's GPUs, or None where NVML cannot start (no driver, no GPU)."""
    try:
        return NvmlReader()
    except Exception:  # noqa: BLE001 - pynvml's NVMLError_* (library or driver not found)
        return None


def this_process_gpus(reader: Any) -> list[GpuWatch]:
    """The GPUs of this process (see `watched_gpus`), from torch's view of CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    try:
        uuids = [str(torch.cuda.get_device_properties(i).uuid) for i in range(count)]
    except (AttributeError, RuntimeError):
        uuids = []
    return watched_gpus(
        visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
        cuda_uuids=uuids,
        current=torch.cuda.current_device(),
        nvml=reader.devices(),
    )


# --- the monitor -------------------------------------------------------------------------------
class SystemMetricsMonitor:
    """Samples every ``interval`` seconds in a daemon thread and hands each sample to ``log``.

    log(metrics, step) sends the sample (e.g. `MlflowTracker.log_metrics` through its own
    client); anything it raises drops that sample (``dropped`` counts them). Steps count
    samples from ``first_step``.
    """

    def __init__(
        self,
        log: Callable[[dict[str, float], int], None],
        *,
        interval: float = DEFAULT_INTERVAL,
        gpus: Sequence[GpuWatch] = (),
        reader: Any = None,
        first_step: int = 0,
    ) -> None:
        import psutil

        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds (got {interval})")
        self.log, self.interval = log, interval
        self.gpus, self.reader = list(gpus), reader
        self.step = first_step
        self.logged = self.dropped = 0
        self._psutil = psutil
        self._process = psutil.Process()
        self._children: dict[int, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="system-metrics", daemon=True)

    def start(self) -> SystemMetricsMonitor:
        self._psutil.cpu_percent(None)  # the first call only sets the reference point
        self._process.cpu_percent(None)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Take the last sample and end the thread; waits at most ``timeout`` seconds (a log
        call stuck in the client's retries finishes on its own, in the daemon thread)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self.interval)
            self._log_sample()
            if stopping:
                return

    def _log_sample(self) -> None:
        try:
            self.log(self.sample(), self.step)
            self.logged += 1
        except Exception:  # noqa: BLE001 - a reader failing (driver reset), the server down
            self.dropped += 1
        self.step += 1

    def sample(self) -> dict[str, float]:
        """One sample: ``system/...`` name -> value."""
        ps = self._psutil
        memory = ps.virtual_memory()
        out = {
            CPU: ps.cpu_percent(None),
            PREFIX + "system_memory_usage_megabytes": (memory.total - memory.available) / MIB,
            PREFIX + "system_memory_usage_percentage": memory.percent,
        }
        cpu, rss = self._process.cpu_percent(None), self._process.memory_info().rss
        live = {}
        for child in self._process.children(recursive=True):
            known = self._children.get(child.pid, child)
            try:
                cpu += known.cpu_percent(None)  # 0.0 the first time a child is seen
                rss += known.memory_info().rss
            except ps.Error:  # it ended meanwhile
                continue
            live[child.pid] = known
        self._children = live
        out[PREFIX + "process_cpu_utilization_percentage"] = cpu  # of one core: 4 busy = 400
        out[PREFIX + "process_memory_rss_megabytes"] = rss / MIB
        if self.gpus and self.reader is not None:
            numbers = self.reader.read([g.nvml_index for g in self.gpus])
            for gpu in self.gpus:
                for name, value in numbers.get(gpu.nvml_index, {}).items():
                    out[f"{PREFIX}gpu_{gpu.cuda_index}_{name}"] = value
        return out
