"""torchvision's VGG19 `features` (texture extractor, perceptual losses, `val_perceptual`), with
ImageNet weights when found locally (docs/MODEL.md). The reference downloads them at start-up;
clusters and CI often have no internet, so training only looks (an explicit path, then
`$TTSR_VGG19_WEIGHTS`, then torchvision's cache) and else warns loudly and starts from random
weights. An explicit path must exist and hold the weights (a typo must never fall through to
random features). `find_imagenet_weights` checks cheaply (torch's zip format through mmap;
torchvision's old-format file by header and exact size); loading reads every tensor.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ttsr.errors import UsageError

log = logging.getLogger(__name__)

ENV_VAR = "TTSR_VGG19_WEIGHTS"
# The file torchvision's VGG19_Weights.IMAGENET1K_V1 downloads into the hub cache. Its name carries
# the first 8 hex digits of its sha256 (torchvision's convention); the full digest and size are
# those of https://download.pytorch.org/models/vgg19-dcbb9e9d.pth.
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
TORCHVISION_SHA256 = "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
TORCHVISION_BYTES = 574_673_361
TORCHVISION_URL = f"https://download.pytorch.org/models/{TORCHVISION_FILE}"
# torchvision's VGG19 (configuration "E") `features`: conv widths, "M" a 2x2 max-pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M")
VGG19_LAYOUT += (512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
RANDOM_VGG_SEED = 19  # the one random VGG19 every run without ImageNet weights gets

DOWNLOAD_COMMAND = "python -m ttsr.vgg download"
_ZIP_MAGIC = b"PK\x03\x04"
# torch.save's old format starts with a pickled magic number; torchvision's 2017 file is one.
_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class VGGWeightsError(UsageError, ValueError):
    """A VGG19 weights file that is missing or unusable. The message is always one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(line.strip() for line in message.splitlines() if line.strip()))


@dataclass(frozen=True)
class Candidate:
    """A place to look: `source` says who named it ("$TTSR_VGG19_WEIGHTS", ...)."""

    path: Path
    source: str
    explicit: bool

    def error(self, what: str) -> VGGWeightsError:
        if self.explicit:
            fix = f"point it at torchvision's {TORCHVISION_FILE} (`{DOWNLOAD_COMMAND}` fetches it)"
        else:
            fix = f"delete it and run `{DOWNLOAD_COMMAND}`"
        return VGGWeightsError(f"VGG19 weights {self.path} (from {self.source}): {what}; {fix}")


def cache_path() -> Path:
    """Where torchvision (and `python -m ttsr.vgg download`) keeps the file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def resolve(weights: str | Path | None = None, *, source: str = "vgg_weights") -> Candidate | None:
    """The file the lookup uses (existence only), or None when there is none to use."""
    candidates = []
    if weights is not None:
        candidates.append(Candidate(Path(weights).expanduser(), source, explicit=True))
    if env := os.environ.get(ENV_VAR):
        # A path named in the environment is as deliberate as an argument.
        candidates.append(Candidate(Path(env).expanduser(), f"${ENV_VAR}", explicit=True))
    candidates.append(Candidate(cache_path(), "the torchvision cache", explicit=False))
    for c in candidates:
        if c.path.is_file():
            return c
        if c.explicit:
            what = "not a file" if c.path.exists() else "not found"
            raise VGGWeightsError(f"VGG19 weights {what}: {c.path} (from {c.source})")
    return None


def missing_weights_message() -> str:
    """One line for a command that needs ImageNet VGG19 and found none: how to get them."""
    return (
        f"ImageNet VGG19 weights not found (${ENV_VAR} is not set and {cache_path()} does not "
        f"exist): run `{DOWNLOAD_COMMAND}`, or set {ENV_VAR}=/path/to/{TORCHVISION_FILE} "
        "(e.g. on a mounted volume); --allow-random-vgg runs anyway on random VGG features"
    )


def vgg19_layers() -> nn.Sequential:
    """torchvision's `vgg19().features`: the same 37 modules, state-dict keys and default init.

    Built here, not imported: `import torchvision` loads torch._dynamo and costs ~2 s in every
    process (each CLI start, each Ray trial), for a 21-entry layer list.
    """
    layers: list[nn.Module] = []
    channels = 3
    for width in VGG19_LAYOUT:
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = width
    return nn.Sequential(*layers)


def _listed(keys: list[str], limit: int = 3) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _features_part(state: object, c: Candidate) -> dict[str, torch.Tensor]:
    """The `features.*` tensors of a full torchvision VGG19 state dict, or of a `features` one."""
    if not isinstance(state, dict):
        raise c.error(f"expected a state dict, got {type(state).__name__}")
    features = {
        str(k).removeprefix("features."): v
        for k, v in state.items()
        if not str(k).startswith("classifier.")
    }
    with torch.device("meta"):  # keys and shapes only, no memory
        expected = {k: v.shape for k, v in vgg19_layers().state_dict().items()}
    problems = []
    if missing := [k for k in expected if k not in features]:
        problems.append(f"missing {_listed(missing)}")
    if unexpected := [k for k in features if k not in expected]:
        problems.append(f"unexpected {_listed(unexpected)}")

    def fits(k: str) -> bool:
        v = features[k]
        return isinstance(v, torch.Tensor) and v.is_floating_point() and v.shape == expected[k]

    if wrong := [k for k in expected if k in features and not fits(k)]:
        problems.append(f"wrong shape or dtype: {_listed(wrong)}")
    if problems:
        raise c.error(f"not a torchvision VGG19 state dict ({'; '.join(problems)})")
    return features


def _reason(exc: BaseException) -> str:
    """What torch.load's failure means, in a few words (its own messages run to paragraphs)."""
    text = _ANSI.sub("", str(exc)).strip()
    if isinstance(exc, pickle.UnpicklingError) and text.startswith("Weights only load failed"):
        if found := re.search(r"Unsupported global: GLOBAL (\S+)", text):
            return (
                f"holds a pickled Python object ({found.group(1)}), not a plain state dict of "
                "tensors (not loaded)"
            )
        why = text.partition("WeightsUnpickler error:")[2].split()
        return f"corrupt (unpickling failed: {' '.join(why[:8]) or 'unknown reason'})"
    if isinstance(exc, EOFError) or "unexpected EOF" in text:
        return "truncated (the file ends before its data does)"
    if "central directory" in text:
        return "truncated or corrupt (a torch zip archive without its central directory)"
    first = text.splitlines()[0].split(". ")[0] if text else ""
    return f"not a readable torch file ({type(exc).__name__}: {first[:160]})"


def load_features_state(c: Candidate, *, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Read `c` (every tensor, unless ``mmap``) and return its `features` part, checked against
    VGG19's shapes."""
    with c.path.open("rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if not head:
        raise c.error("empty file")
    if not head.startswith((_ZIP_MAGIC, b"\x80")):  # a zip archive or a pickle
        raise c.error(f"not a torch file (starts with {head[:8]!r})")
    try:
        state = torch.load(c.path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a weights file"
        raise c.error(_reason(exc)) from None
    return _features_part(state, c)


def find_imagenet_weights(weights: str | Path | None = None) -> Path | None:
    """The ImageNet VGG19 file that `vgg19_features(weights)` would load, or None when nothing
    explicit was given and the torchvision cache has no file (`missing_weights_message()` says
    what to do). Cheap; raises `VGGWeightsError` as the module docstring says."""
    c = resolve(weights)
    if c is None:
        return None
    with c.path.open("rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if head == _LEGACY_MAGIC and c.path.stat().st_size == TORCHVISION_BYTES:
        return c.path  # torchvision's own file, complete (its hash is checked when downloaded)
    # mmap maps a zip archive's tensors without reading them; a truncated one fails already.
    load_features_state(c, mmap=head.startswith(_ZIP_MAGIC))
    return c.path


def random_vgg19_features() -> nn.Sequential:
    """`vgg19(weights=None).features` with torchvision's init, without building the classifier
    (120 M parameters whose random init alone takes seconds; only `features` is ever used).

    Always the same random network (its own generator, seeded `RANDOM_VGG_SEED`; the global RNG
    is untouched): a perceptual loss or `val_perceptual` measured with random features must be
    the same measure in every trial, whatever the trial's seed.
    """
    features = vgg19_layers()
    generator = torch.Generator().manual_seed(RANDOM_VGG_SEED)
    with torch.no_grad():
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                # kaiming_normal_(mode="fan_out", nonlinearity="relu"), from our generator
                fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
                m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=generator)
                nn.init.constant_(m.bias, 0)
    return features


def vgg19_features(weights: str | Path | None = None) -> tuple[nn.Sequential, bool]:
    """torchvision's `vgg19().features` (37 layers) and whether ImageNet weights loaded. Never
    downloads; with nothing found, the random init and a warning."""
    features = random_vgg19_features()
    found = resolve(weights)
    if found is not None:
        features.load_state_dict(load_features_state(found), strict=True)
        log.info("VGG19 ImageNet weights loaded from %s", found.path)
        return features, True

    msg = (
        "VGG19 ImageNet weights not found (looked at the vgg_weights argument, "
        f"${ENV_VAR} and {cache_path()}); the texture extractor starts from RANDOM weights, so "
        f"results are NOT comparable with the reference or the paper (`{DOWNLOAD_COMMAND}` "
        "fetches them)"
    )
    warnings.warn(msg, stacklevel=2)
    log.warning(msg)
    return features, False
