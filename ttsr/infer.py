"""Super-resolve images with a trained TTSR: `python -m ttsr.infer` (docs/MODEL.md).

Follows the reference's test mode exactly: LR↑ = PIL BICUBIC ×4 of the LR image; the reference
is cropped (top-left) to a multiple of 4 and Ref↓↑ = PIL BICUBIC ÷4 then ×4; pixels map to
[-1, 1] as x / 127.5 - 1; the output is (sr + 1) · 127.5 rounded to uint8, saved as PNG. LR and
reference sizes are independent: any LR of at least 1×1 px, a reference of at least 4×4 px.

CKPT: a checkpoint file (ours or the reference's TTSR.pt), a checkpoint folder, or an MLflow
model URI (only then is mlflow imported). Nothing of `ttsr.data` is imported: the MLflow pyfunc
loads this module from the model's own code files.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ttsr.checkpoint import CheckpointError, load_model
from ttsr.cli_errors import DEBUG_HELP, run_cli
from ttsr.errors import UsageError
from ttsr.model import TTSR
from ttsr.tracking.model_uri import URI_SCHEMES as MODEL_URI_SCHEMES  # resolved through MLflow

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class InferError(UsageError):
    """Bad user input: one line and exit code 2 (`ttsr.cli_errors`)."""


def read_rgb(path: Path, what: str) -> np.ndarray:
    """(H, W, 3) uint8."""
    if not path.is_file():
        raise InferError(f"{what} image not found: {path}")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InferError(
            f"{what} {path} is not a readable image ({exc.__class__.__name__})"
        ) from None


def _resize(x: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(x).resize((width, height), Image.BICUBIC))


def _to_tensor(x: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x).astype(np.float32) / 127.5 - 1.0)
    return t.permute(2, 0, 1).unsqueeze(0)


def prepare_pair(lr: np.ndarray, ref: np.ndarray) -> dict[str, Tensor]:
    """The reference's test-mode inputs from an LR (h, w, 3) and a reference (H, W, 3) image.

    Returns lr (1, 3, h, w), lr_up (1, 3, 4h, 4w), ref and ref_downup (1, 3, H//4·4, W//4·4).
    """
    h, w = lr.shape[:2]
    if h < 1 or w < 1:
        raise InferError(f"LR image is empty ({w}x{h})")
    rh, rw = ref.shape[0] // 4 * 4, ref.shape[1] // 4 * 4
    if rh < 4 or rw < 4:
        raise InferError(
            f"reference is {ref.shape[1]}x{ref.shape[0]} px; it must be at least 4x4 "
            "(it is searched at 1/4 resolution)"
        )
    ref = ref[:rh, :rw]
    lr_up = _resize(lr, 4 * w, 4 * h)
    ref_downup = _resize(_resize(ref, rw // 4, rh // 4), rw, rh)
    return {
        "lr": _to_tensor(lr),
        "lr_up": _to_tensor(lr_up),
        "ref": _to_tensor(ref),
        "ref_downup": _to_tensor(ref_downup),
    }


@torch.no_grad()
def super_resolve(
    model: TTSR, lr: np.ndarray, ref: np.ndarray, *, device: torch.device
) -> np.ndarray:
    """(h, w, 3) uint8 LR + reference -> (4h, 4w, 3) uint8 SR."""
    batch = {k: v.to(device) for k, v in prepare_pair(lr, ref).items()}
    sr = model(batch["lr"], batch["lr_up"], batch["ref"], batch["ref_downup"]).sr
    out = ((sr[0].float() + 1.0) * 127.5).round().clamp(0, 255)
    return out.permute(1, 2, 0).to(torch.uint8).cpu().numpy()


def _pairs(lr: Path, ref: Path, out: Path) -> list[tuple[Path, Path, Path]]:
    for flag, path in (("--lr", lr), ("--ref", ref)):
        if not path.exists():
            raise InferError(f"{flag} not found: {path}")
    if lr.is_dir() != ref.is_dir():
        raise InferError("--lr and --ref must both be files or both be directories")
    if not lr.is_dir():
        if out.is_dir():
            raise InferError(f"--out {out} is a directory; give a file name for a single pair")
        return [(lr, ref, out)]

    def by_stem(folder: Path) -> dict[str, Path]:
        return {
            p.stem: p
            for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        }

    lrs, refs = by_stem(lr), by_stem(ref)
    if not lrs:
        raise InferError(f"--lr {lr} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    unmatched = sorted(set(lrs) - set(refs))
    if unmatched:
        raise InferError(
            f"no reference in {ref} for {len(unmatched)} LR image(s), e.g. {lrs[unmatched[0]].name}"
        )
    if out.exists() and not out.is_dir():
        raise InferError(f"--out {out} is a file; give a directory for folders of pairs")
    return [(lrs[s], refs[s], out / f"{s}.png") for s in sorted(lrs)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ttsr.infer",
        description="Super-resolve LR images ×4 with a TTSR checkpoint and reference images "
        "(single pair, or two folders of pairs matched by file name).",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="model.pt, reference TTSR.pt, or an MLflow URI: models:/NAME/latest, runs:/ID/model",
    )
    p.add_argument("--lr", required=True, type=Path, help="LR image or folder")
    p.add_argument("--ref", required=True, type=Path, help="reference image or folder")
    p.add_argument("--out", required=True, type=Path, help="output PNG or folder")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument(
        "--mlflow-uri",
        help="tracking server or store of a models:/ or runs:/ checkpoint "
        "(default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    p.add_argument(
        "--search-chunk",
        type=int,
        default=None,
        help="reference positions per search block (default: auto; 0 = dense as the reference)",
    )
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return p


def run(args: argparse.Namespace) -> list[Path]:
    if args.search_chunk is not None and args.search_chunk < 0:
        raise InferError(f"--search-chunk must be >= 0, got {args.search_chunk}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise InferError(f"--device {args.device!r} is not a torch device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InferError(f"--device {args.device}: CUDA is not available")
    pairs = _pairs(args.lr, args.ref, args.out)
    model = _load(args.checkpoint, args.mlflow_uri, device=device, search_chunk=args.search_chunk)

    if len(pairs) > 1:
        from tqdm import tqdm

        pairs = tqdm(pairs, unit="img", file=sys.stderr)
    written = []
    for lr_path, ref_path, out_path in pairs:
        lr = read_rgb(lr_path, "LR")
        ref = read_rgb(ref_path, "reference")
        sr = super_resolve(model, lr, ref, device=device)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sr).save(out_path, format="PNG")
        written.append(out_path)
    return written


def _load(
    checkpoint: str, mlflow_uri: str | None, *, device: torch.device, search_chunk: int | None
) -> TTSR:
    """The model of a checkpoint file or folder, or of an MLflow model URI."""
    try:
        if not checkpoint.startswith(MODEL_URI_SCHEMES):
            path = Path(checkpoint)
            if not path.exists():
                raise InferError(f"checkpoint not found: {checkpoint}")
            return load_model(path, device=device, search_chunk=search_chunk)
        from ttsr.tracking import no_download_progress
        from ttsr.tracking.model_uri import ModelError, local_checkpoint

        uri = mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
        with tempfile.TemporaryDirectory(prefix="ttsr-infer-") as tmp, no_download_progress():
            try:
                path = local_checkpoint(checkpoint, tmp, tracking_uri=uri)
            except ModelError as exc:
                raise InferError(str(exc)) from None
            return load_model(path, device=device, search_chunk=search_chunk)
    except CheckpointError as exc:
        raise InferError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    """Errors are one line and an exit code (`ttsr.cli_errors`); ``--debug`` shows tracebacks."""
    return run_cli(lambda: _main(argv), argv=argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    written = run(args)
    if len(written) == 1:
        print(f"wrote {written[0]}")
    else:
        print(f"wrote {len(written)} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
