"""``python -m ttsr.data prepare --address HEAD:6379`` (or ``auto``): the chunk jobs as Ray tasks.

`ttsr` stays free of Ray: its data CLI imports this module by name only when ``--address`` is
given. Every node must see ``--src`` and ``--out`` at the same paths; one probe task per alive
node checks that before anything is written. Each chunk is one 1-CPU task running the local
path's `ttsr.data.prepare.process_chunk` (same shards, receipts and manifest); a task lost with
its node is retried elsewhere, and a rerun of the command does only what receipts lack.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import ray
from ray.exceptions import NodeDiedError, RayError, TaskUnschedulableError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tqdm import tqdm

from ttsr.data import remote
from ttsr.data.prepare import ChunkJob, process_chunk
from ttsr.errors import DataError, first_line

CONNECT_TIMEOUT_S = 10.0  # a TCP answer from the head's GCS port before ray.init is tried
TASK_RETRIES = 3  # a chunk's task is rerun this often when its worker or node dies


def _check_reachable(address: str) -> None:
    """Fail fast, in one line, on a HOST:PORT where nothing listens (ray.init waits long)."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DataError(f"--address {address}: expected HOST:PORT of the Ray head, or auto")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise DataError(
            f"--address {address}: no Ray head answers there ({exc.strerror or exc}); "
            "give the head's GCS address (HOST:6379) or start one with `ray start --head`"
        ) from exc


def _probe(src: str, out: str) -> tuple[str, bool, bool]:
    """On one node: (its IP, --src is a folder there, --out's folder exists and is writable)."""
    try:
        src_ok = remote.is_folder(src) if remote.is_uri(src) else os.path.isdir(src)
    except (OSError, ValueError):  # no credentials or no route to the object store there
        src_ok = False
    return ray.util.get_node_ip_address(), src_ok, os.access(out, os.W_OK)


def probe_nodes(src: Path | str, target: Path) -> list[tuple[str, bool, bool]]:
    """`_probe` run once on every alive node (pinned there, no CPU asked). A node that died
    but is still listed alive (the GCS notices within seconds) is left out: it runs no chunk."""
    probe = ray.remote(num_cpus=0)(_probe)
    refs = [
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(str(src), str(target))
        for n in ray.nodes()
        if n["Alive"]
    ]
    answers = []
    for ref in refs:
        try:
            answers.append(ray.get(ref))
        except (TaskUnschedulableError, NodeDiedError):
            continue
    return answers


def check_visible(src: Path | str, out: Path) -> None:
    """Every alive node sees ``src`` and can write where ``out`` goes; else a DataError."""
    target = next(p for p in (out, *out.parents) if p.exists())  # out may not exist yet
    for ip, src_ok, out_ok in probe_nodes(src, target):
        if not src_ok:
            raise DataError(
                f"--src {src}: not a folder on node {ip}; put the images on storage every node "
                "mounts at the same path, or on object storage every node can read"
            )
        if not out_ok:
            raise DataError(
                f"--out {out}: {target} is missing or read-only on node {ip}; mount a writable "
                "shared volume at the same path on every node"
            )


def _chunk_task(job: ChunkJob) -> str:
    process_chunk(job)
    return ray.util.get_node_ip_address()


class ClusterRunner:
    """A `ttsr.data.prepare.Runner` that runs each chunk job as a Ray task."""

    def __init__(self, on_done: Callable[[ChunkJob, str], None] | None = None) -> None:
        self.on_done = on_done  # called with (job, node IP) as each chunk finishes
        self.chunks_per_node: Counter[str] = Counter()  # node IP -> chunks it finished

    def __call__(self, jobs: list[ChunkJob], progress: bool) -> None:
        # SPREAD: chunks go round the nodes, so reads and writes are spread over their links
        task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES, scheduling_strategy="SPREAD")(
            _chunk_task
        )
        pending = {task.remote(job): job for job in jobs}
        total = sum(len(j.files) for j in jobs)
        bar = tqdm(total=total, unit="img", desc="prepare", disable=not progress or not jobs)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(done[0])
                try:
                    node = ray.get(done[0])
                except RayError as exc:
                    raise RuntimeError(
                        f"chunk {job.chunk} failed ({first_line(exc)}); finished chunks are kept: "
                        "run the same command again to do the rest"
                    ) from exc
                self.chunks_per_node[node] += 1
                bar.update(len(job.files))
                if self.on_done is not None:
                    self.on_done(job, node)
        finally:
            for ref in pending:
                ray.cancel(ref)
            bar.close()
        if self.chunks_per_node:
            per_node = ", ".join(f"{ip}: {n}" for ip, n in sorted(self.chunks_per_node.items()))
            print(f"{len(jobs)} chunks on {len(self.chunks_per_node)} nodes ({per_node})")


@contextmanager
def connect(
    address: str,
    *,
    src: Path | str,
    out: Path,
    on_done: Callable[[ChunkJob, str], None] | None = None,
) -> Iterator[ClusterRunner]:
    """Connect to the cluster at ``address``, check that every node sees ``src`` and ``out``,
    and give a runner; the connection ends with the block. Bad input raises DataError."""
    _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, ValueError) as exc:
        raise DataError(f"--address {address}: {first_line(exc)}") from exc
    try:
        check_visible(src, out)
        yield ClusterRunner(on_done)
    finally:
        ray.shutdown()
