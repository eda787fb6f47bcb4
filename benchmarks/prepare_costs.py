"""CPU cost of preparing one 1024-px PNG into the study sizes, per step (docs/DATA.md).

    python -m benchmarks.prepare_costs [--images 24] [--side 1024] [--sizes 160 256 384 512]

Source images: scikit-image photos cut square, scaled to ``--side`` and given mild sensor-like
noise, so that their PNGs are about FFHQ's size (~1.3 MB at 1024 px). Prints per-image CPU
milliseconds of each step in one process, then a whole chunk through `process_chunk` (Parquet
writes, receipts) as a check that the steps add up.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from ttsr.data.images import decode_rgb_square, encode_png, resize_to
from ttsr.data.prepare import PNG_LEVEL, ChunkJob, process_chunk


def _sources(n: int, side: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    photos = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        s = min(img.shape[:2])
        square = Image.fromarray(img[:s, :s]).resize((side, side), Image.Resampling.BICUBIC)
        noisy = np.asarray(square, dtype=np.float32) + rng.normal(0, 3, (side, side, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _cpu_ms(fn, items) -> tuple[float, list]:
    start = time.process_time()
    results = [fn(x) for x in items]
    return (time.process_time() - start) * 1000 / len(items), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 256, 384, 512])
    args = parser.parse_args()
    sources = _sources(args.images, args.side)
    mean_mb = np.mean([len(s) for s in sources]) / 1e6
    print(f"{args.images} PNGs of {args.side} px, mean {mean_mb:.2f} MB")
    decode, images = _cpu_ms(lambda b: decode_rgb_square(b)[0], sources)
    digest, _ = _cpu_ms(lambda b: hashlib.sha256(b).hexdigest(), sources)
    resize = encode = 0.0
    for size in args.sizes:
        ms, resized = _cpu_ms(lambda im, s=size: resize_to(im, s), images)
        resize += ms
        ms, _ = _cpu_ms(lambda im: encode_png(im, PNG_LEVEL), resized)
        encode += ms
    print(
        f"per image, CPU ms: decode {decode:.1f}, sha256 {digest:.1f}, resizes {resize:.1f}, "
        f"PNG encodes {encode:.1f}; sum {decode + digest + resize + encode:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        src.mkdir()
        names = [f"{i:05d}.png" for i in range(len(sources))]
        for name, b in zip(names, sources, strict=True):
            (src / name).write_bytes(b)
        job = ChunkJob(str(src), str(out), 0, names, sorted(args.sizes), 0, 0.2, "png", False)
        chunk = _cpu_ms(process_chunk, [job])[0] / len(names)
    print(
        f"per image through process_chunk (read, all steps, Parquet, receipts): {chunk:.1f} ms CPU"
    )
    for cores in (1, 8, 64, 256):
        minutes = 70_000 * chunk / 1000 / 60 / cores
        print(f"FFHQ 70,000 images on {cores:>3} cores: {minutes:7.1f} min")


if __name__ == "__main__":
    main()
