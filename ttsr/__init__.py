"""TTSR: Texture Transformer Network for image super-resolution (Yang et al., CVPR 2020).

A plain PyTorch library. It never imports Ray; orchestration lives in the `tune/` package.
"""

__version__ = "0.1.0"
