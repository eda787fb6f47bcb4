"""Peak memory (max RSS) and time of one full TTSR forward on CPU, dense vs chunked search.

    python scripts/measure_search_memory.py --size 512 --chunk 0 --chunk auto
    python scripts/measure_search_memory.py --size 1024 --chunk auto
    python scripts/measure_search_memory.py --size 1024 --chunk 0 --limit-gib 16

Each (size, chunk) runs in a fresh child process (max RSS is a per-process high-water mark) with
the default model (n_feats 64, 16+16+8+4, random weights: memory and time do not depend on them),
batch 1, LR = size/4, reference = size. `--limit-gib` caps the child's address space growth
during the forward (RLIMIT_AS), so a dense search that cannot fit fails with torch's "tried to
allocate N bytes" instead of taking the machine's memory from everyone else.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def _vm_size_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def child(size: int, chunk: int | None, limit_gib: float | None) -> dict:
    import torch

    from ttsr.model import TTSR, ModelConfig

    torch.manual_seed(0)
    model = TTSR(ModelConfig(), load_vgg=False, search_chunk=chunk).eval()
    lr = torch.rand(1, 3, size // 4, size // 4) * 2 - 1
    images = [torch.rand(1, 3, size, size) * 2 - 1 for _ in range(3)]
    base_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if limit_gib is not None:
        cap = _vm_size_bytes() + int(limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    result = {"size": size, "chunk": "auto" if chunk is None else chunk, "ok": True}
    start = time.perf_counter()
    try:
        with torch.no_grad():
            out = model(lr, *images)
        result["sr_shape"] = list(out.sr.shape)
    except (RuntimeError, MemoryError) as exc:
        result["ok"] = False
        result["error"] = str(exc).strip().splitlines()[0][:300]
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["rss_before_forward_mib"] = round(base_mib)
    result["threads"] = torch.get_num_threads()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, action="append", required=True, help="HR side (px)")
    p.add_argument("--chunk", action="append", default=None, help="'auto', 0 (dense) or N")
    p.add_argument("--limit-gib", type=float, default=None, help="cap on the forward's growth")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    chunks = args.chunk or ["auto"]
    if args.child:
        chunk = None if chunks[0] == "auto" else int(chunks[0])
        print(json.dumps(child(args.size[0], chunk, args.limit_gib)))
        return
    root = Path(__file__).resolve().parents[1]
    for size in args.size:
        for chunk in chunks:
            cmd = [sys.executable, __file__, "--child", "--size", str(size), "--chunk", chunk]
            if args.limit_gib is not None:
                cmd += ["--limit-gib", str(args.limit_gib)]
            env = {**os.environ, "PYTHONPATH": str(root)}
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)
            lines = done.stdout.strip().splitlines()
            if done.returncode != 0 or not lines:
                tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
                print(json.dumps({"size": size, "chunk": chunk, "ok": False, "error": tail[0]}))
            else:
                print(lines[-1])
            sys.stdout.flush()


if __name__ == "__main__":
    main()
