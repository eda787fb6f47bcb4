"""ImageNet VGG19 `features` without ever touching the network.

The reference builds its texture extractor (LTE) from `torchvision.models.vgg19(pretrained=True)`,
which downloads weights at start-up. Training clusters and CI often have no internet, so we only
*look* for the weights file, in a fixed order, and fall back to a random init with a loud warning
(the LTE then starts from noise and results are not comparable with the paper or the reference).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

log = logging.getLogger(__name__)

ENV_VAR = "TTSR_VGG19_WEIGHTS"
# The file name torchvision's VGG19_Weights.IMAGENET1K_V1 downloads into the hub cache.
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"


def random_vgg19_features() -> nn.Sequential:
    """`vgg19(weights=None).features` with torchvision's init, without building the classifier.

    The classifier holds 120 M parameters whose random init alone takes seconds; the LTE and the
    perceptual loss only ever use `features`.
    """
    features = make_layers(cfgs["E"], batch_norm=False)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
    return features


def _candidates(weights: str | Path | None) -> list[tuple[Path, bool]]:
    """Where to look, in order, as (path, explicit). Explicit paths must exist and load."""
    out: list[tuple[Path, bool]] = []
    if weights is not None:
        out.append((Path(weights).expanduser(), True))
    env = os.environ.get(ENV_VAR)
    if env:
        # A path named in the environment is as deliberate as an argument: a typo must not
        # silently fall through to random weights.
        out.append((Path(env).expanduser(), True))
    out.append((Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE, False))
    return out


def _load(path: Path) -> dict[str, torch.Tensor]:
    """Read a VGG19 state dict (full model or `features` only) and return the `features` part."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a weights file"
        raise ValueError(f"VGG19 weights {path}: not a readable torch file ({exc})") from None
    if not isinstance(state, dict):
        raise ValueError(f"VGG19 weights {path}: expected a state dict, got {type(state).__name__}")
    return {
        k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")
    }


def vgg19_features(weights: str | Path | None = None) -> tuple[nn.Sequential, bool]:
    """Return torchvision's `vgg19().features` (37 layers) and whether ImageNet weights loaded.

    Looks at, in order: the explicit `weights` path, the file named by `$TTSR_VGG19_WEIGHTS`, and
    torchvision's cache (`torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth`). Never downloads.
    A missing or unreadable file at an explicit path (argument or environment) is a `ValueError`
    naming the path; if nothing is found the network keeps its random init and a warning says so.
    """
    features = random_vgg19_features()
    for path, explicit in _candidates(weights):
        if not path.is_file():
            if explicit:
                raise ValueError(f"VGG19 weights not found: {path}")
            continue
        state = _load(path)
        try:
            features.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ValueError(
                f"VGG19 weights {path}: not a torchvision VGG19 state dict ({first})"
            ) from None
        log.info("VGG19 ImageNet weights loaded from %s", path)
        return features, True

    msg = (
        "VGG19 ImageNet weights not found (looked at the vgg_weights argument, "
        f"${ENV_VAR} and {Path(torch.hub.get_dir()) / 'checkpoints' / TORCHVISION_FILE}); "
        "the texture extractor starts from RANDOM weights, so results are NOT comparable with "
        "the reference or the paper"
    )
    warnings.warn(msg, stacklevel=2)
    log.warning(msg)
    return features, False
