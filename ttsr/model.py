"""The TTSR network (Yang et al., CVPR 2020), weight-compatible with researchmm/TTSR.

Module and parameter names follow the reference exactly (`MainNet.SFE.conv_head`, `LTE.slice3.10`,
...), so its released checkpoints load without renaming. The only behavioural difference is the
search/transfer, which is computed in memory-bounded chunks (see `ttsr.search`; `search_chunk=0`
runs the reference's dense computation).

Notation: N batch, (h, w) LR size, n = n_feats. All images are in [-1, 1].
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ttsr.config import parse_blocks
from ttsr.search import (
    SEARCH_METHODS,
    dense_relevance_search,
    dense_transfer,
    relevance_search,
    transfer,
)
from ttsr.upsample import bicubic_by_convolution
from ttsr.vgg import random_vgg19_features, vgg19_features

# ImageNet statistics the VGG19 weights were trained with.
VGG_MEAN = (0.485, 0.456, 0.406)
VGG_STD = (0.229, 0.224, 0.225)
# Channels of the LTE levels (VGG19 relu1_1, relu2_1, relu3_1): fixed by VGG, not by n_feats.
LTE_CHANNELS = (64, 128, 256)


@dataclass(frozen=True)
class ModelConfig:
    n_feats: int = 64
    num_res_blocks: tuple[int, int, int, int] = (16, 16, 8, 4)  # SFE, ×1, ×2, ×4 stages
    res_scale: float = 1.0

    def __post_init__(self) -> None:
        blocks = tuple(self.num_res_blocks)
        if len(blocks) != 4 or any(not isinstance(b, int) or b < 0 for b in blocks):
            raise ValueError(
                f"num_res_blocks must be 4 non-negative ints (SFE, x1, x2, x4), got {blocks}"
            )
        object.__setattr__(self, "num_res_blocks", blocks)
        # MergeTail halves the width (n → n/2), so n must be even.
        if not isinstance(self.n_feats, int) or self.n_feats < 2 or self.n_feats % 2:
            raise ValueError(f"n_feats must be an even int >= 2, got {self.n_feats!r}")

    @classmethod
    def from_string(
        cls, num_res_blocks: str, *, n_feats: int = 64, res_scale: float = 1.0
    ) -> ModelConfig:
        """Parse the reference's "16+16+8+4" block spec (a ValueError names num_res_blocks)."""
        blocks = parse_blocks(num_res_blocks)
        return cls(n_feats=n_feats, num_res_blocks=blocks, res_scale=res_scale)

    def blocks_string(self) -> str:
        return "+".join(str(b) for b in self.num_res_blocks)


class TTSROutput(NamedTuple):
    sr: Tensor  # (N, 3, 4h, 4w) in [-1, 1]
    S: Tensor  # (N, 1, h, w) soft attention: max relevance per LR position
    T_lv3: Tensor  # (N, 256, h, w) transferred textures
    T_lv2: Tensor  # (N, 128, 2h, 2w)
    T_lv1: Tensor  # (N, 64, 4h, 4w)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1)


def bicubic(x: Tensor, scale: int, *, fast: bool = False) -> Tensor:
    """Bicubic upsampling, default alignment (align_corners=False), as the reference.

    fast: on the CPU in fp32, the same interpolation as depthwise convolutions
    (`ttsr.upsample`, faster there); elsewhere, and when False, `F.interpolate`.
    """
    if fast and x.device.type == "cpu" and x.dtype == torch.float32:
        return bicubic_by_convolution(x, scale)
    return F.interpolate(x, scale_factor=scale, mode="bicubic")


# --- MainNet building blocks -----------------------------------------------------------------


class ResBlock(nn.Module):
    """x + res_scale · conv2(relu(conv1(x))); no batch norm. (N, n, H, W) -> same.

    fast_kernels (see `TTSR.use_fast_kernels`): skip the multiplication when res_scale is 1
    (bit for bit the same values and gradients, one elementwise pass less each way).
    """

    def __init__(self, *, n_feats: int, res_scale: float) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.fast_kernels = False
        self.conv1 = conv3x3(n_feats, n_feats)
        self.conv2 = conv3x3(n_feats, n_feats)

    def forward(self, x: Tensor) -> Tensor:
        residual = self.conv2(F.relu(self.conv1(x)))
        if self.fast_kernels and self.res_scale == 1:
            return x + residual
        return x + self.res_scale * residual


def res_blocks(count: int, *, n_feats: int, res_scale: float) -> nn.ModuleList:
    return nn.ModuleList(ResBlock(n_feats=n_feats, res_scale=res_scale) for _ in range(count))


class SFE(nn.Module):
    """Shallow feature extraction: (N, 3, h, w) -> (N, n, h, w)."""

    def __init__(self, *, num_res_blocks: int, n_feats: int, res_scale: float) -> None:
        super().__init__()
        self.conv_head = conv3x3(3, n_feats)
        self.RBs = res_blocks(num_res_blocks, n_feats=n_feats, res_scale=res_scale)
        self.conv_tail = conv3x3(n_feats, n_feats)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv_head(x))
        h = x
        for block in self.RBs:
            h = block(h)
        return x + self.conv_tail(h)


class CSFI2(nn.Module):
    """Cross-scale feature integration of two streams: (N, n, H, W), (N, n, 2H, 2W) -> same."""

    def __init__(self, *, n_feats: int) -> None:
        super().__init__()
        self.fast_kernels = False  # see `TTSR.use_fast_kernels`
        self.conv12 = conv1x1(n_feats, n_feats)
        self.conv21 = conv3x3(n_feats, n_feats, stride=2)
        self.conv_merge1 = conv3x3(2 * n_feats, n_feats)
        self.conv_merge2 = conv3x3(2 * n_feats, n_feats)

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        x12 = F.relu(self.conv12(bicubic(x1, 2, fast=self.fast_kernels)))
        x21 = F.relu(self.conv21(x2))
        y1 = F.relu(self.conv_merge1(torch.cat((x1, x21), dim=1)))
        y2 = F.relu(self.conv_merge2(torch.cat((x2, x12), dim=1)))
        return y1, y2


class CSFI3(nn.Module):
    """Cross-scale integration of three streams at H, 2H, 4H; shapes are preserved."""

    def __init__(self, *, n_feats: int) -> None:
        super().__init__()
        self.fast_kernels = False  # see `TTSR.use_fast_kernels`
        self.conv12 = conv1x1(n_feats, n_feats)
        self.conv13 = conv1x1(n_feats, n_feats)
        self.conv21 = conv3x3(n_feats, n_feats, stride=2)
        self.conv23 = conv1x1(n_feats, n_feats)
        self.conv31_1 = conv3x3(n_feats, n_feats, stride=2)
        self.conv31_2 = conv3x3(n_feats, n_feats, stride=2)
        self.conv32 = conv3x3(n_feats, n_feats, stride=2)
        self.conv_merge1 = conv3x3(3 * n_feats, n_feats)
        self.conv_merge2 = conv3x3(3 * n_feats, n_feats)
        self.conv_merge3 = conv3x3(3 * n_feats, n_feats)

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x12 = F.relu(self.conv12(bicubic(x1, 2, fast=self.fast_kernels)))
        x13 = F.relu(self.conv13(bicubic(x1, 4, fast=self.fast_kernels)))
        x21 = F.relu(self.conv21(x2))
        x23 = F.relu(self.conv23(bicubic(x2, 2, fast=self.fast_kernels)))
        x31 = F.relu(self.conv31_2(F.relu(self.conv31_1(x3))))
        x32 = F.relu(self.conv32(x3))
        y1 = F.relu(self.conv_merge1(torch.cat((x1, x21, x31), dim=1)))
        y2 = F.relu(self.conv_merge2(torch.cat((x2, x12, x32), dim=1)))
        y3 = F.relu(self.conv_merge3(torch.cat((x3, x13, x23), dim=1)))
        return y1, y2, y3


class MergeTail(nn.Module):
    """Streams at h, 2h, 4h -> (N, 3, 4h, 4w) clamped to [-1, 1]."""

    def __init__(self, *, n_feats: int) -> None:
        super().__init__()
        self.fast_kernels = False  # see `TTSR.use_fast_kernels`
        self.conv13 = conv1x1(n_feats, n_feats)
        self.conv23 = conv1x1(n_feats, n_feats)
        self.conv_merge = conv3x3(3 * n_feats, n_feats)
        self.conv_tail1 = conv3x3(n_feats, n_feats // 2)
        self.conv_tail2 = conv1x1(n_feats // 2, 3)

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor) -> Tensor:
        x13 = F.relu(self.conv13(bicubic(x1, 4, fast=self.fast_kernels)))
        x23 = F.relu(self.conv23(bicubic(x2, 2, fast=self.fast_kernels)))
        x = F.relu(self.conv_merge(torch.cat((x3, x13, x23), dim=1)))
        x = self.conv_tail2(self.conv_tail1(x))  # no activation between them (as the reference)
        return torch.clamp(x, -1.0, 1.0)


def run_blocks(blocks: nn.ModuleList, x: Tensor) -> Tensor:
    for block in blocks:
        x = block(x)
    return x


class MainNet(nn.Module):
    """The generator: LR plus transferred textures -> SR.

    forward(x (N, 3, h, w), S (N, 1, h, w), T_lv3 (N, 256, h, w), T_lv2 (N, 128, 2h, 2w),
    T_lv1 (N, 64, 4h, 4w)) -> (N, 3, 4h, 4w).

    checkpoint_activations (an attribute, not a weight: set it on a built model): in training,
    run each segment of the forward — SFE, each stage's texture fusion, each residual group,
    CSFI2, CSFI3, the merge tail — under `torch.utils.checkpoint` (non-reentrant): only the
    segments' inputs are kept for the backward, which recomputes one segment's activations at a
    time. Same outputs and gradients, about one extra MainNet forward per step, and the
    full-resolution activations of the x4 stage (most of the step's memory at 512 px and up)
    are no longer all alive at once.
    """

    def __init__(self, *, num_res_blocks: tuple[int, ...], n_feats: int, res_scale: float) -> None:
        super().__init__()
        n = n_feats
        sfe, b1, b2, b4 = num_res_blocks
        self.checkpoint_activations = False
        self.fast_kernels = False  # see `TTSR.use_fast_kernels`
        self.SFE = SFE(num_res_blocks=sfe, n_feats=n, res_scale=res_scale)
        # stage ×1
        self.conv11_head = conv3x3(LTE_CHANNELS[2] + n, n)
        self.RB11 = res_blocks(b1, n_feats=n, res_scale=res_scale)
        self.conv11_tail = conv3x3(n, n)
        # ×1 -> ×2
        self.conv12 = conv3x3(n, 4 * n)
        self.ps12 = nn.PixelShuffle(2)
        # stage ×2
        self.conv22_head = conv3x3(LTE_CHANNELS[1] + n, n)
        self.ex12 = CSFI2(n_feats=n)
        self.RB21 = res_blocks(b2, n_feats=n, res_scale=res_scale)
        self.RB22 = res_blocks(b2, n_feats=n, res_scale=res_scale)
        self.conv21_tail = conv3x3(n, n)
        self.conv22_tail = conv3x3(n, n)
        # ×2 -> ×4
        self.conv23 = conv3x3(n, 4 * n)
        self.ps23 = nn.PixelShuffle(2)
        # stage ×4
        self.conv33_head = conv3x3(LTE_CHANNELS[0] + n, n)
        self.ex123 = CSFI3(n_feats=n)
        self.RB31 = res_blocks(b4, n_feats=n, res_scale=res_scale)
        self.RB32 = res_blocks(b4, n_feats=n, res_scale=res_scale)
        self.RB33 = res_blocks(b4, n_feats=n, res_scale=res_scale)
        self.conv31_tail = conv3x3(n, n)
        self.conv32_tail = conv3x3(n, n)
        self.conv33_tail = conv3x3(n, n)
        self.merge_tail = MergeTail(n_feats=n)

    def forward(self, x: Tensor, S: Tensor, T_lv3: Tensor, T_lv2: Tensor, T_lv1: Tensor) -> Tensor:
        run = self._segment
        x11 = run(self.SFE, x)

        # stage ×1: soft-attention fusion of level-3 textures (no ReLU on the head), then a
        # residual group
        x11 = run(self._fuse1, x11, T_lv3, S)
        x11 = run(_group, x11, self.RB11, self.conv11_tail)

        # stage ×2
        x22 = run(self._fuse2, x11, T_lv2, S)
        x21_res, x22_res = run(self.ex12, x11, x22)
        x21 = run(_group, x21_res, self.RB21, self.conv21_tail, x11)
        x22 = run(_group, x22_res, self.RB22, self.conv22_tail, x22)

        # stage ×4
        x33 = run(self._fuse3, x22, T_lv1, S)
        x31_res, x32_res, x33_res = run(self.ex123, x21, x22, x33)
        x31 = run(_group, x31_res, self.RB31, self.conv31_tail, x21)
        x32 = run(_group, x32_res, self.RB32, self.conv32_tail, x22)
        x33 = run(_group, x33_res, self.RB33, self.conv33_tail, x33)

        return run(self.merge_tail, x31, x32, x33)

    def _segment(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.checkpoint_activations and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def _fuse1(self, x11: Tensor, T_lv3: Tensor, S: Tensor) -> Tensor:
        return x11 + self.conv11_head(torch.cat((x11, T_lv3), dim=1)) * S

    def _fuse2(self, x11: Tensor, T_lv2: Tensor, S: Tensor) -> Tensor:
        x22 = F.relu(self.ps12(self.conv12(x11)))
        return x22 + self.conv22_head(torch.cat((x22, T_lv2), dim=1)) * bicubic(
            S, 2, fast=self.fast_kernels
        )

    def _fuse3(self, x22: Tensor, T_lv1: Tensor, S: Tensor) -> Tensor:
        x33 = F.relu(self.ps23(self.conv23(x22)))
        return x33 + self.conv33_head(torch.cat((x33, T_lv1), dim=1)) * bicubic(
            S, 4, fast=self.fast_kernels
        )


def _group(x: Tensor, blocks: nn.ModuleList, tail: nn.Conv2d, skip: Tensor | None = None) -> Tensor:
    """A residual group: ``skip + tail(blocks(x))``, with ``skip`` = x unless given."""
    return (x if skip is None else skip) + tail(run_blocks(blocks, x))


# --- texture extractor and search ------------------------------------------------------------


class LTE(nn.Module):
    """Learnable texture extractor: the first VGG19 layers (up to relu3_1).

    forward(x (N, 3, H, W) in [0, 1]) -> (lv1 (N, 64, H, W), lv2 (N, 128, H/2, W/2),
    lv3 (N, 256, H/4, W/4)).
    """

    def __init__(self, vgg_features: nn.Sequential, *, requires_grad: bool) -> None:
        super().__init__()
        # Keep the VGG layers at their original indices ("slice3.10" = features[10]): that is
        # what the reference's (and torchvision's) state dict keys are.
        self.slice1 = nn.Sequential()
        self.slice2 = nn.Sequential()
        self.slice3 = nn.Sequential()
        for i in range(12):
            target = self.slice1 if i < 2 else self.slice2 if i < 7 else self.slice3
            target.add_module(str(i), vgg_features[i])
        for p in self.parameters():
            p.requires_grad = requires_grad
        # Fixed ImageNet normalisation as a 1×1 conv (a parameter in the reference, so its state
        # dict has sub_mean.weight/bias; never trained).
        self.sub_mean = nn.Conv2d(3, 3, kernel_size=1)
        std = torch.tensor(VGG_STD)
        with torch.no_grad():
            self.sub_mean.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1))
            self.sub_mean.bias.copy_(-torch.tensor(VGG_MEAN) / std)
        self.sub_mean.requires_grad_(False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.sub_mean(x)
        lv1 = self.slice1(x)
        lv2 = self.slice2(lv1)
        lv3 = self.slice3(lv2)
        return lv1, lv2, lv3


class SearchTransfer(nn.Module):
    """Hard-attention search on level-3 features and transfer of levels 1–3 (no parameters).

    forward(lrsr_lv3 (N, 256, h, w), refsr_lv3 (N, 256, hr, wr), ref_lv1 (N, 64, 4hr, 4wr),
    ref_lv2 (N, 128, 2hr, 2wr), ref_lv3 (N, 256, hr, wr)) -> (S (N, 1, h, w), T_lv3, T_lv2,
    T_lv1) with T_lvk at the size of the LR↑ level-k features.
    chunk, dtype, method: see `ttsr.search.relevance_search`; chunk 0 = the reference's dense
    computation (search and transfer).
    """

    def __init__(
        self, *, chunk: int | None = None, dtype: torch.dtype | None = None, method: str = "auto"
    ) -> None:
        super().__init__()
        if chunk is not None and chunk < 0:
            raise ValueError(f"search_chunk must be None, 0 (dense) or positive, got {chunk}")
        if method not in SEARCH_METHODS:
            raise ValueError(
                f"search_method must be one of {', '.join(SEARCH_METHODS)}, got {method!r}"
            )
        self.chunk = chunk
        self.dtype = dtype
        self.method = method

    def forward(
        self, lrsr_lv3: Tensor, refsr_lv3: Tensor, ref_lv1: Tensor, ref_lv2: Tensor, ref_lv3: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        n, _, h, w = lrsr_lv3.shape
        if self.chunk == 0:
            S, index = dense_relevance_search(lrsr_lv3, refsr_lv3)
            move = dense_transfer
        else:
            S, index = relevance_search(
                lrsr_lv3, refsr_lv3, chunk=self.chunk, dtype=self.dtype, method=self.method
            )
            move = transfer
        T_lv3 = move(ref_lv3, index, query_hw=(h, w), scale=1)
        T_lv2 = move(ref_lv2, index, query_hw=(h, w), scale=2)
        T_lv1 = move(ref_lv1, index, query_hw=(h, w), scale=4)
        return S.reshape(n, 1, h, w), T_lv3, T_lv2, T_lv1


# --- the whole network -----------------------------------------------------------------------


def _check_inputs(lr: Tensor, lr_up: Tensor, ref: Tensor, ref_downup: Tensor) -> None:
    names = {"lr": lr, "lr_up": lr_up, "ref": ref, "ref_downup": ref_downup}
    for name, t in names.items():
        if t.dim() != 4 or t.shape[1] != 3:
            raise ValueError(f"{name} must be (N, 3, H, W), got {tuple(t.shape)}")
        if t.shape[0] != lr.shape[0]:
            raise ValueError(f"{name} has batch {t.shape[0]}, lr has {lr.shape[0]}")
    h, w = lr.shape[-2:]
    if tuple(lr_up.shape[-2:]) != (4 * h, 4 * w):
        raise ValueError(
            f"lr_up must be 4x lr: lr is {h}x{w}, so lr_up must be {4 * h}x{4 * w}, "
            f"got {lr_up.shape[-2]}x{lr_up.shape[-1]}"
        )
    if ref.shape != ref_downup.shape:
        raise ValueError(
            f"ref {tuple(ref.shape)} and ref_downup {tuple(ref_downup.shape)} differ in shape"
        )
    # The three VGG levels must be exactly 1, 1/2, 1/4 of the input for the patch geometry
    # (3×3 / 6×6 / 12×12 with strides 1 / 2 / 4) to line up.
    if ref.shape[-2] % 4 or ref.shape[-1] % 4:
        raise ValueError(
            f"ref height and width must be multiples of 4, got {ref.shape[-2]}x{ref.shape[-1]}"
        )


RANDOM_VGG = "random"  # TTSR(vgg=RANDOM_VGG): random VGG features, no lookup


class TTSR(nn.Module):
    """Texture Transformer for super-resolution (×4).

    forward(lr (N, 3, h, w), lr_up (N, 3, 4h, 4w), ref (N, 3, Hr, Wr), ref_downup (N, 3, Hr, Wr))
    -> TTSROutput. All in [-1, 1]; Hr and Wr multiples of 4 (the reference need not be the size
    of lr_up, as in the reference's test mode). `lr_up` = bicubic ×4 of lr and `ref_downup` =
    bicubic ÷4 then ×4 of ref, both made by the data pipeline with PIL.

    vgg, the LTE's VGG19 features: None (the reference's choice) = ImageNet VGG19 where
    `ttsr.vgg.vgg19_features` finds it (random, with a warning, where not); a weights file;
    `RANDOM_VGG` = random init without a lookup, for callers that load a checkpoint right away;
    or (features, pretrained) the caller loaded (the LTE takes its modules, so pass a copy you
    don't share with a frozen loss network).
    search_chunk / search_dtype / search_method: see `ttsr.search.relevance_search`.
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        vgg: str | Path | tuple[nn.Sequential, bool] | None = None,
        search_chunk: int | None = None,
        search_dtype: torch.dtype | None = None,
        search_method: str = "auto",
    ) -> None:
        super().__init__()
        self.config = config
        self.MainNet = MainNet(
            num_res_blocks=config.num_res_blocks, n_feats=config.n_feats, res_scale=config.res_scale
        )
        if isinstance(vgg, tuple):  # (features, pretrained) the caller has; used as they are
            features, self.pretrained_vgg = vgg
        elif vgg == RANDOM_VGG:
            features, self.pretrained_vgg = random_vgg19_features(), False
        else:
            features, self.pretrained_vgg = vgg19_features(vgg)
        self.LTE = LTE(features, requires_grad=True)
        # Frozen copy for the transferal perceptual loss; refreshed from LTE before every use.
        self.LTE_copy = LTE(copy.deepcopy(features), requires_grad=False)
        self.SearchTransfer = SearchTransfer(
            chunk=search_chunk, dtype=search_dtype, method=search_method
        )

    def forward(self, lr: Tensor, lr_up: Tensor, ref: Tensor, ref_downup: Tensor) -> TTSROutput:
        _check_inputs(lr, lr_up, ref, ref_downup)
        # The images are data: no gradient into them (the reference detaches them too).
        _, _, lrsr_lv3 = self.LTE((lr_up.detach() + 1.0) / 2.0)
        _, _, refsr_lv3 = self.LTE((ref_downup.detach() + 1.0) / 2.0)
        ref_lv1, ref_lv2, ref_lv3 = self.LTE((ref.detach() + 1.0) / 2.0)
        S, T_lv3, T_lv2, T_lv1 = self.SearchTransfer(lrsr_lv3, refsr_lv3, ref_lv1, ref_lv2, ref_lv3)
        sr = self.MainNet(lr, S, T_lv3, T_lv2, T_lv1)
        return TTSROutput(sr, S, T_lv3, T_lv2, T_lv1)

    def use_fast_kernels(self, enabled: bool = True) -> None:
        """Compute MainNet the same way with faster kernels (TrainConfig `fast_kernels`): no
        multiplication by a res_scale of 1 in the residual blocks, and on the CPU in fp32 the
        bicubic upsamplings as depthwise convolutions (`ttsr.upsample`). Off (the default):
        the reference's operations."""
        for module in self.MainNet.modules():
            if hasattr(module, "fast_kernels"):
                module.fast_kernels = enabled

    def texture_features(self, sr: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """LTE features of `sr` (N, 3, H, W) in [-1, 1] through the frozen copy of the current LTE.

        Returns (lv1 (N, 64, H, W), lv2 (N, 128, H/2, W/2), lv3 (N, 256, H/4, W/4)). Gradients
        reach `sr` but not the LTE: the transferal perceptual loss trains MainNet only.
        """
        with torch.no_grad():
            for dst, src in zip(self.LTE_copy.parameters(), self.LTE.parameters(), strict=True):
                dst.copy_(src)
        return self.LTE_copy((sr + 1.0) / 2.0)

    def reference_state_dict(self) -> dict[str, Tensor]:
        """The state dict the reference saves: `MainNet.*` and `LTE.*`, without `LTE_copy`."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("LTE_copy.")}
