"""The optimised training path computes what the reference path computes (ttsr/optimize.py).

Everything runs on the CPU with real photographs (scikit-image's astronaut): the CUDA-only
settings (bf16 autocast, bf16 search matmuls, channels_last, fused Adam) are switched on
explicitly here, so their numerics are checked without a GPU; scripts/gpu_check.sh runs this
file on CUDA as well (the `device` fixture).

Not here: that the chunked search's memory grows linearly with image area — that is
tests/test_search.py::test_chunked_search_memory_grows_linearly_with_area.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image

from ttsr.data.images import bicubic
from ttsr.metrics import psnr
from ttsr.model import ModelConfig
from ttsr.optimize import (
    ALL_LOSSES,
    REC_ONLY,
    REFERENCE,
    PathSettings,
    TrainingStep,
    ablation_steps,
    optimised,
)
from ttsr.search import relevance_search

TINY = ModelConfig(n_feats=8, num_res_blocks=(1, 1, 1, 1))
SMALL = ModelConfig(n_feats=16, num_res_blocks=(2, 2, 2, 2))
# (HR crop corner, reference crop corner) in the 512x512 astronaut: face, badge, flag, suit.
CROPS = (((150, 60), (150, 60)), ((200, 200), (180, 190)), ((0, 0), (20, 10)), ((300, 330), (0, 0)))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Two threads on two busy shared cores make every OpenMP barrier wait (docs/BENCHMARKS.md).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device(request.param)


def _tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)


def real_batch(size: int, count: int = 2) -> list[torch.Tensor]:
    """LR, LR_up, HR, Ref, Ref_downup from astronaut crops, made with PIL bicubic as the data."""
    photo = Image.fromarray(skimage.data.astronaut())
    parts: list[list[torch.Tensor]] = [[] for _ in range(5)]
    for (x, y), (rx, ry) in CROPS[:count]:
        hr = photo.crop((x, y, x + size, y + size))
        ref = photo.crop((rx, ry, rx + size, ry + size))
        lr = bicubic(hr, size // 4)
        images = (lr, bicubic(lr, size), hr, ref, bicubic(bicubic(ref, size // 4), size))
        for part, img in zip(parts, images, strict=True):
            part.append(_tensor(img))
    return [torch.stack(p) for p in parts]


# Every CUDA optimisation switched on, on whatever device the test runs on.
ALL_ON = PathSettings(
    search_chunk=None,
    search_bf16=True,
    amp_bf16=True,
    channels_last=True,
    fused_adam=True,
    sync_each_step=False,
)


def _infer(settings: PathSettings, config: ModelConfig, x: list[torch.Tensor], device):
    trainer = TrainingStep(
        model_config=config, weights=REC_ONLY, settings=settings, device=device, seed=0
    )
    lr, lr_up, _, ref, ref_downup = (trainer.prepare(t) for t in x)
    return trainer.infer(lr, lr_up, ref, ref_downup)


def test_both_paths_start_from_the_same_weights():
    a = TrainingStep(model_config=TINY, weights=REC_ONLY, settings=REFERENCE, device="cpu")
    b = TrainingStep(model_config=TINY, weights=REC_ONLY, settings=ALL_ON, device="cpu")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key].contiguous(), rtol=0, atol=0, msg=key)


def test_chunked_fp32_path_equals_dense_reference(device):
    x = real_batch(48)
    fp32_chunked = dataclasses.replace(REFERENCE, search_chunk=7)  # several blocks per image
    a = _infer(REFERENCE, TINY, x, device)
    b = _infer(fp32_chunked, TINY, x, device)
    for name, ta, tb in zip(a._fields, a, b, strict=True):
        torch.testing.assert_close(tb, ta, rtol=1e-5, atol=1e-5, msg=name)


def test_channels_last_equals_contiguous(device):
    x = real_batch(48)
    a = _infer(optimised("cpu"), TINY, x, device)
    b = _infer(dataclasses.replace(optimised("cpu"), channels_last=True), TINY, x, device)
    assert b.sr.is_contiguous(memory_format=torch.channels_last) or b.sr.shape[1] == 3
    torch.testing.assert_close(b.sr, a.sr, rtol=1e-4, atol=1e-4)


def test_bf16_optimised_output_is_within_40_db_of_fp32_dense(device):
    x = real_batch(64, count=4)
    reference = _infer(REFERENCE, SMALL, x, device).sr.float()
    fast = _infer(ALL_ON, SMALL, x, device).sr.float()
    values = psnr(fast, reference)
    assert values.min().item() >= 40.0, values
    # Freshly initialised weights make outputs that depend only weakly on the input, so 40 dB
    # alone could hide errors as large as the picture itself: the bf16 error must also be far
    # (15 dB = 5.6x in RMS) below the differences between the outputs for different photos.
    assert (reference.abs() >= 1.0).float().mean() < 0.5  # not clamped flat
    between_photos = psnr(reference[:-1], reference[1:]).max().item()
    assert values.min().item() >= between_photos + 15.0, (values, between_photos)


def test_bf16_search_picks_patches_as_relevant_as_fp32(device):
    """Where bf16 matmuls change the argmax, the chosen patch is a near-tie in fp32."""
    x = real_batch(64, count=4)
    trainer = TrainingStep(model_config=TINY, weights=REC_ONLY, settings=REFERENCE, device=device)
    with torch.no_grad():
        _, _, q = trainer.model.LTE((x[1].to(device) + 1) / 2)
        _, _, k = trainer.model.LTE((x[4].to(device) + 1) / 2)
        s32, i32 = relevance_search(q, k)
        s16, i16 = relevance_search(q, k, dtype=torch.bfloat16)
    assert (i16 == i32).float().mean() > 0.5
    # The fp32 relevance of the patch bf16 picked is within bf16 rounding of the fp32 best.
    qn = F.normalize(F.unfold(q.float(), 3, padding=1), dim=1)  # (N, D, HW)
    kn = F.normalize(F.unfold(k.float(), 3, padding=1), dim=1)  # (N, D, HrWr)
    picked = torch.gather(kn, 2, i16.unsqueeze(1).expand(-1, kn.shape[1], -1))
    relevance_of_pick = (picked * qn).sum(dim=1)
    assert (s32 - relevance_of_pick).max() < 2e-2
    assert (s16 - s32).abs().max() < 2e-2


def _losses(settings: PathSettings, weights, x, device, steps: int = 2) -> list[dict[str, float]]:
    torch.manual_seed(1)  # the gradient penalty draws from the global RNG
    trainer = TrainingStep(
        model_config=TINY, weights=weights, settings=settings, device=device, seed=0
    )
    batch = [trainer.prepare(t) for t in x]
    return [{k: float(v) for k, v in trainer.step(*batch).items()} for _ in range(steps)]


def test_fp32_optimised_training_steps_match_the_reference(device):
    x = real_batch(48)
    a = _losses(REFERENCE, REC_ONLY, x, device)
    b = _losses(optimised("cpu"), REC_ONLY, x, device)
    for la, lb in zip(a, b, strict=True):
        assert lb.keys() == la.keys()
        for key in la:
            assert lb[key] == pytest.approx(la[key], rel=1e-4, abs=1e-6), key
    assert a[1]["total"] < a[0]["total"] + 1e-3  # the steps train (or at least do not diverge)


@pytest.mark.parametrize(
    "weights, steps",
    [(REC_ONLY, 2), pytest.param(ALL_LOSSES, 1, marks=pytest.mark.slow)],
    ids=["rec", "all"],
)
def test_all_optimisations_training_steps_stay_close(weights, steps, device):
    x = real_batch(32)
    a = _losses(REFERENCE, weights, x, device, steps)
    b = _losses(ALL_ON, weights, x, device, steps)
    for la, lb in zip(a, b, strict=True):
        assert lb.keys() == la.keys()
        # bf16 keeps ~3 significant digits; the critic's WGAN-GP loss is a difference of large
        # terms, so it gets an absolute tolerance too.
        for key in la:
            assert lb[key] == pytest.approx(la[key], rel=5e-2, abs=5e-2), key
    assert all(np.isfinite(v) for step in b for v in step.values())


def test_ablation_ends_at_the_cuda_optimised_path():
    steps = ablation_steps()
    assert steps[0][1] == REFERENCE
    assert steps[-1][1] == optimised("cuda")
    assert ablation_steps(compile=True)[-1][1] == optimised("cuda", compile=True)
    # each step changes something
    settings = [s for _, s in steps]
    assert all(a != b for a, b in zip(settings, settings[1:], strict=False))


def test_optimised_cpu_path_keeps_cuda_only_switches_off():
    cpu = optimised("cpu")
    assert cpu.search_chunk != 0 and not cpu.sync_each_step
    assert not (cpu.amp_bf16 or cpu.search_bf16 or cpu.channels_last or cpu.fused_adam)
