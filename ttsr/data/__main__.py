"""``python -m ttsr.data prepare|info|photos`` (see docs/DATA.md; the loader benchmark is
``python -m benchmarks.loader``)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ttsr.cli_errors import DEBUG_HELP, run_cli
from ttsr.data.manifest import read_manifest
from ttsr.data.remote import is_uri
from ttsr.errors import DataError

MAX_LISTED = 50
CLUSTER_MODULE = "tune.execution.prepare_cluster"  # runs the chunk jobs as Ray tasks (--address)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def print_manifest(manifest: dict, out: Path) -> None:
    print(
        f"{out}  (source {manifest['source']}, format {manifest['format']}, "
        f"seed {manifest['seed']}, test fraction {manifest['test_fraction']})"
    )
    print(f"{'size':>6} {'train':>8} {'test':>8} {'shards':>7} {'bytes':>12} {'per image':>10}")
    for size, st in manifest["sizes"].items():
        n = st["train"] + st["test"]
        per = _human(st["bytes"] / n) if n else "-"
        print(
            f"{size:>6} {st['train']:>8} {st['test']:>8} {st['shards']:>7} "
            f"{_human(st['bytes']):>12} {per:>10}"
        )
    skipped = manifest["skipped"]
    print(f"skipped files: {len(skipped)}")
    for s in skipped[:MAX_LISTED]:
        where = f" (size {', '.join(map(str, s['sizes']))})" if s["sizes"] else ""
        print(f"  {s['path']}: {s['reason']}{where}")
    if len(skipped) > MAX_LISTED:
        print(f"  ... {len(skipped) - MAX_LISTED} more in {out / 'manifest.json'}")


def cmd_prepare(args: argparse.Namespace) -> None:
    from ttsr.data.prepare import prepare

    options = {
        "sizes": args.sizes,
        "test_fraction": args.test_fraction,
        "limit": args.limit,
        "seed": args.seed,
        "fmt": args.format,
        "files_per_shard": args.files_per_shard,
        "progress": not args.no_progress,
    }
    if args.address is None:
        result = prepare(args.src, args.out, workers=args.workers, **options)
    else:
        # Ray lives in tune/ (the library never imports it): that module is found by name.
        cluster = importlib.import_module(CLUSTER_MODULE)
        out = args.out.resolve()  # the tasks' cwd is not this one
        src = args.src if is_uri(args.src) else Path(args.src).resolve()
        if not is_uri(src) and not src.is_dir():
            raise DataError(f"--src {args.src}: no such folder")
        with cluster.connect(args.address, src=src, out=out) as runner:
            result = prepare(src, out, runner=runner, **options)
    print(
        f"prepared {result.chunks_total} chunks ({result.chunks_resumed} already done) "
        f"in {result.seconds:.1f} s"
    )
    print_manifest(result.manifest, result.out)


def cmd_info(args: argparse.Namespace) -> None:
    if not args.dir.is_dir():
        raise DataError(f"{args.dir}: no such folder")
    print_manifest(read_manifest(args.dir), args.dir)


def cmd_photos(args: argparse.Namespace) -> None:
    from ttsr.data.source import write_photo_variants

    n = write_photo_variants(args.out, args.count, side=args.side, seed=args.seed)
    print(f"wrote {n} images of {args.side} px to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ttsr.data", description=__doc__)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="images -> Parquet shards at several sizes + manifest")
    p.add_argument(
        "--src",
        required=True,
        help="folder tree of images, or a pyarrow filesystem URI (s3://bucket/prefix)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (resumable)")
    p.add_argument("--sizes", type=int, nargs="+", default=[160, 256, 384, 512])
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--limit", type=int, default=None, help="first N files (sorted paths)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local processes (default: the CPUs this process may use: affinity, cgroup quota)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="run the chunks as Ray tasks on this cluster (HEAD:6379, or auto inside one); "
        "--src and --out must be on storage every node mounts at the same path",
    )
    p.add_argument(
        "--format",
        choices=("png", "raw"),
        default="png",
        help="png: PNG bytes (default); raw: uint8 pixels, zstd",
    )
    p.add_argument("--files-per-shard", type=int, default=128)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("info", help="counts per split and size, skipped files, bytes")
    p.add_argument("dir", type=Path)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("photos", help="N images cut from the scikit-image photos (for sizing)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--side", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_photos)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Errors are one line and an exit code (`ttsr.cli_errors`); ``--debug`` shows tracebacks."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        args.func(args)
        return 0

    return run_cli(body, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
