"""ImageNet VGG19 for the texture extractor, the perceptual losses and `val_perceptual`.

- `vgg19_features(weights)`: the network, with the weights when found locally (never downloads).
- `find_imagenet_weights(weights)` / `missing_weights_message()`: a cheap "are they there?" for
  commands that must refuse to run without them.
- `python -m ttsr.vgg download [--to PATH]`: fetch torchvision's file, hash-checked, atomically;
  `python -m ttsr.vgg check [PATH]`: which file would be used and whether it is valid.
"""

from ttsr.vgg.features import random_vgg19_features, vgg19_features
from ttsr.vgg.weights import (
    ENV_VAR,
    TORCHVISION_BYTES,
    TORCHVISION_FILE,
    TORCHVISION_SHA256,
    TORCHVISION_URL,
    VGGWeightsError,
    cache_path,
    find_imagenet_weights,
    missing_weights_message,
    vgg19_layers,
)

__all__ = [
    "ENV_VAR",
    "TORCHVISION_BYTES",
    "TORCHVISION_FILE",
    "TORCHVISION_SHA256",
    "TORCHVISION_URL",
    "VGGWeightsError",
    "cache_path",
    "find_imagenet_weights",
    "missing_weights_message",
    "random_vgg19_features",
    "vgg19_features",
    "vgg19_layers",
]
