"""torchvision's VGG19 `features`, with ImageNet weights when they can be found locally.

The reference builds its texture extractor (LTE) from `torchvision.models.vgg19(pretrained=True)`,
which downloads weights at start-up. Training clusters and CI often have no internet, so training
only *looks* for the weights file (`ttsr.vgg.weights`: argument, `$TTSR_VGG19_WEIGHTS`,
torchvision's cache) and falls back to a random init with a loud warning (the LTE then starts
from noise and results are not comparable with the paper or the reference). Fetching the file is
a separate, explicit step: `python -m ttsr.vgg download`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from ttsr.vgg.weights import (
    DOWNLOAD_COMMAND,
    ENV_VAR,
    cache_path,
    load_features_state,
    resolve,
    vgg19_layers,
)

log = logging.getLogger(__name__)


RANDOM_VGG_SEED = 19  # the one random VGG19 every run without ImageNet weights gets


def random_vgg19_features() -> nn.Sequential:
    """`vgg19(weights=None).features` with torchvision's init, without building the classifier.

    The classifier holds 120 M parameters whose random init alone takes seconds; the LTE and the
    perceptual loss only ever use `features`.

    Always the same random network (drawn from its own generator, seeded `RANDOM_VGG_SEED`; the
    global RNG is untouched): a perceptual loss or `val_perceptual` measured with random features
    must be the same measure in every trial, whatever the trial's seed.
    """
    features = vgg19_layers()
    generator = torch.Generator().manual_seed(RANDOM_VGG_SEED)
    with torch.no_grad():
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                # kaiming_normal_(mode="fan_out", nonlinearity="relu"), from our generator
                fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
                std = (2.0 / fan_out) ** 0.5
                m.weight.normal_(0.0, std, generator=generator)
                nn.init.constant_(m.bias, 0)
    return features


def vgg19_features(weights: str | Path | None = None) -> tuple[nn.Sequential, bool]:
    """Return torchvision's `vgg19().features` (37 layers) and whether ImageNet weights loaded.

    Looks at, in order: the explicit `weights` path, the file named by `$TTSR_VGG19_WEIGHTS`, and
    torchvision's cache (`torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth`). Never downloads.
    A missing explicit path (argument or environment), or a file found that is not VGG19 weights,
    is a `VGGWeightsError` (a `ValueError`) with a one-line message naming the path; if nothing is
    found the network keeps its random init and a warning says so.
    """
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
