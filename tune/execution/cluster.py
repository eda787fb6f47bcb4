"""The Ray cluster a study runs on: connect to the given one, or start a local Ray on 127.0.0.1
(and stop it again); a dry run on a local Ray starts nothing and describes this machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tune.study.options import Options


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[dict, ...]  # ray.nodes() entries: "Alive", "Resources" ({"CPU": .., "GPU": ..})
    address: str  # how the plan names it

    @property
    def gpus(self) -> float:
        return sum(n.get("Resources", {}).get("GPU", 0) for n in self.nodes if n.get("Alive"))


@contextmanager
def connect(options: Options) -> Iterator[Cluster]:
    """The cluster for the block; a Ray this process started or joined is shut down after."""
    if options.dry_run and options.local_ray:
        node = {"Alive": True, "Resources": {"CPU": os.cpu_count() or 1, "GPU": local_gpu_count()}}
        yield Cluster((node,), "a local Ray on 127.0.0.1 (not started: dry run)")
        return
    import ray

    try:
        if options.address:
            ray.init(address=options.address, log_to_driver=False, logging_level="WARNING")
            yield Cluster(tuple(ray.nodes()), options.address)
            return
        context = ray.init(
            _node_ip_address="127.0.0.1",
            include_dashboard=not options.no_dashboard,
            dashboard_host="127.0.0.1",
            dashboard_port=options.dashboard_port,
            # trial output goes to the trial logs; tune.execution.progress prints lines
            log_to_driver=False,
            logging_level="WARNING",
            num_cpus=options.num_cpus,
            _temp_dir=options.ray_temp_dir,
        )
        if not options.no_dashboard:
            print(
                f"Ray dashboard: http://{context.dashboard_url} (when it asks for an "
                "authentication token, `ray get-auth-token` prints it)",
                flush=True,
            )
        yield Cluster(tuple(ray.nodes()), "local Ray on 127.0.0.1 (started by this command)")
    finally:
        if ray.is_initialized():
            ray.shutdown()


def local_gpu_count() -> int:
    """NVIDIA GPUs a local Ray would see, without starting Ray or importing torch (dry runs)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0
