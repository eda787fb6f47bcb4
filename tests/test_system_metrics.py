import sys
import threading
import time
import types

import pytest

from ttsr.tracking import system_metrics as sm
from ttsr.tracking.system_metrics import GpuWatch, SystemMetricsMonitor, watched_gpus

# Four GPUs on the host, in NVML (PCI bus) order.
HOST = [(0, "GPU-aaaa0000"), (1, "GPU-bbbb1111"), (2, "GPU-cccc2222"), (3, "GPU-dddd3333")]


def wait_for(condition, *, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_gpus_ray_assigned_are_matched_by_uuid():
    # Ray gave the trial NVML GPUs 3 and 1; CUDA numbers them 0 and 1 in this process.
    got = watched_gpus(visible="3,1", cuda_uuids=["dddd3333", "bbbb1111"], current=0, nvml=HOST)
    assert got == [GpuWatch(0, 3, "dddd3333"), GpuWatch(1, 1, "bbbb1111")]


def test_without_cuda_visible_devices_only_the_current_gpu_is_watched():
    # A run outside Ray sees every GPU of the host but trains on one: never all of them.
    uuids = [u.removeprefix("GPU-") for _, u in HOST]
    assert watched_gpus(visible=None, cuda_uuids=uuids, current=2, nvml=HOST) == [
        GpuWatch(2, 2, "cccc2222")
    ]


def test_cuda_visible_devices_read_directly_when_cuda_gives_no_uuids():
    assert [
        g.nvml_index for g in watched_gpus(visible="2", cuda_uuids=[], current=0, nvml=HOST)
    ] == [2]
    # UUID prefixes as CUDA accepts them; the list ends at the first entry CUDA can't use.
    got = watched_gpus(visible="GPU-dddd,GPU-zzzz,0", cuda_uuids=[], current=0, nvml=HOST)
    assert got == [GpuWatch(0, 3, "dddd3333")]
    assert watched_gpus(visible="", cuda_uuids=[], current=0, nvml=HOST) == []  # no GPU given


class FakeReader:
    def __init__(self):
        self.asked = []

    def read(self, indices):
        self.asked.append(list(indices))
        return {
            i: {"utilization_percentage": 10.0 * i, "memory_usage_megabytes": 5.0} for i in indices
        }


def test_sample_has_cpu_memory_and_only_the_watched_gpus():
    reader = FakeReader()
    monitor = SystemMetricsMonitor(
        lambda m, s: None, gpus=[GpuWatch(0, 3, "dddd3333")], reader=reader
    )
    sample = monitor.sample()
    assert reader.asked == [[3]]  # NVML device 3, nobody else's
    assert sample["system/gpu_0_utilization_percentage"] == 30.0
    assert not any(k.startswith("system/gpu_1") or "gpu_3" in k for k in sample)
    for key in (
        "system/cpu_utilization_percentage",
        "system/system_memory_usage_megabytes",
        "system/system_memory_usage_percentage",
        "system/process_cpu_utilization_percentage",
        "system/process_memory_rss_megabytes",
    ):
        assert key in sample
    assert sample["system/process_memory_rss_megabytes"] > 1.0


def test_a_short_run_gets_one_sample_and_steps_continue_from_first_step():
    logged = []
    monitor = SystemMetricsMonitor(lambda m, s: logged.append(s), interval=3600, first_step=7)
    monitor.start()
    monitor.stop()
    assert not monitor.running
    assert logged == [7] and monitor.logged == 1


def test_samples_every_interval_in_a_background_thread():
    logged, main = [], threading.get_ident()
    monitor = SystemMetricsMonitor(
        lambda m, s: logged.append((s, threading.get_ident())), interval=0.05
    ).start()
    wait_for(lambda: len(logged) >= 3, what="three samples")
    monitor.stop()
    steps = [s for s, _ in logged]
    assert steps == list(range(len(steps)))
    assert all(ident != main for _, ident in logged)


def test_an_outage_drops_samples_and_the_thread_carries_on():
    down = threading.Event()
    down.set()
    logged = []

    def log(metrics, step):
        if down.is_set():
            raise ConnectionError("tracking server down")
        logged.append(step)

    monitor = SystemMetricsMonitor(log, interval=0.05).start()
    wait_for(lambda: monitor.dropped >= 2, what="dropped samples")
    down.clear()  # the server is back
    wait_for(lambda: len(logged) >= 2, what="samples after the outage")
    monitor.stop()
    assert monitor.dropped >= 2 and logged[0] >= 2  # steps kept counting through the outage


def test_stop_waits_a_bounded_time_for_a_stuck_log_call():
    entered, release = threading.Event(), threading.Event()

    def stuck(metrics, step):  # a log call stuck in the HTTP client's retries
        entered.set()
        release.wait(30)

    monitor = SystemMetricsMonitor(stuck, interval=0.01).start()
    assert entered.wait(10)
    t0 = time.monotonic()
    monitor.stop(timeout=0.5)
    assert time.monotonic() - t0 < 5
    release.set()
    wait_for(lambda: not monitor.running, what="the thread to end")


def test_interval_from_mlflow_environment_variable():
    assert sm.default_interval({}) == sm.DEFAULT_INTERVAL
    assert sm.default_interval({sm.INTERVAL_ENV: "2.5"}) == 2.5
    assert sm.default_interval({sm.INTERVAL_ENV: "soon"}) == sm.DEFAULT_INTERVAL
    with pytest.raises(ValueError, match="interval"):
        SystemMetricsMonitor(lambda m, s: None, interval=0)


def _fake_pynvml(gpus):
    """A stand-in ``pynvml`` answering as the real one does for ``gpus``: (uuid, utilisation %,
    used bytes, total bytes, power mW or None for a board without a power reading)."""

    class NVMLError(Exception):
        pass

    def power(handle):
        if gpus[handle][4] is None:
            raise NVMLError("Not Supported")
        return gpus[handle][4]

    return types.SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda i: i,
        # older pynvml releases return bytes
        nvmlDeviceGetUUID=lambda h: gpus[h][0].encode() if h == 0 else gpus[h][0],
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=gpus[h][1]),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=gpus[h][2], total=gpus[h][3]),
        nvmlDeviceGetPowerUsage=power,
    )


def test_nvml_reader(monkeypatch):
    mib = sm.MIB
    gpus = [
        ("GPU-aaaa0000", 7, 1024 * mib, 81559 * mib, 71500),
        ("GPU-bbbb1111", 93, 40960 * mib, 81559 * mib, None),
    ]
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(gpus))
    reader = sm.gpu_reader()
    assert reader.devices() == [(0, "GPU-aaaa0000"), (1, "GPU-bbbb1111")]
    numbers = reader.read([1])
    assert set(numbers) == {1}
    assert numbers[1]["utilization_percentage"] == 93.0
    assert numbers[1]["memory_usage_megabytes"] == 40960.0
    assert numbers[1]["memory_usage_percentage"] == pytest.approx(100 * 40960 / 81559)
    assert "power_usage_watts" not in numbers[1]  # not supported on that board
    assert reader.read([0])[0]["power_usage_watts"] == 71.5


def test_no_gpu_reader_where_nvml_cannot_start(monkeypatch):
    fake = _fake_pynvml([])

    def no_driver():
        raise fake.NVMLError("NVML Shared Library Not Found")

    fake.nvmlInit = no_driver
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert sm.gpu_reader() is None
