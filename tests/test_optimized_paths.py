"""The optimised training path computes what the reference path computes.

Both paths are `TrainConfig` values built by `ttsr.train.trainer.build_trainer`: the reference one
is `benchmarks.configs.reference_config` (dense search, fp32, eager, contiguous, plain Adam), the
optimised one what a study runs (the defaults), with bf16 autocast and bf16 search matmuls on top
where a test says so. Real photographs (scikit-image's astronaut). `build_trainer` ignores the
CUDA-only knobs on the CPU (channels_last), so on the CPU `built(...,
emulate_cuda=True)` applies them by hand after the build, the way the builder does on CUDA, and
their numerics are checked without a GPU; scripts/gpu_check.sh runs this file on CUDA as well
(the `device` fixture), where the builder applies them itself.

Not here: that the chunked search's memory grows linearly with image area — that is
tests/test_search.py::test_chunked_search_memory_grows_linearly_with_area.
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.configs import ALL_LOSS_WEIGHTS, reference_config
from ttsr import names
from ttsr.config import TrainConfig
from ttsr.data.images import bicubic
from ttsr.metrics import psnr
from ttsr.model import TTSROutput
from ttsr.search import relevance_search
from ttsr.train.step import StepLosses
from ttsr.train.trainer import IMAGE_KEYS, Trainer, build_trainer

TINY = {"n_feats": 8, "num_res_blocks": "1+1+1+1"}
SMALL = {"n_feats": 16, "num_res_blocks": "2+2+2+2"}
REC_ONLY: dict[str, float] = {}
ALL_LOSSES = ALL_LOSS_WEIGHTS  # the reference's full recipe
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


def real_batch(size: int, count: int = 2) -> dict[str, torch.Tensor]:
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
    return {k: torch.stack(p) for k, p in zip(IMAGE_KEYS, parts, strict=True)}


def study(device: torch.device, size: int, model=TINY, **changes) -> TrainConfig:
    """What a study runs for this model and crop (the defaults), with ``changes``."""
    return TrainConfig(device=device.type, size=size, **model, **changes)


def reference(device: torch.device, size: int, model=TINY, **changes) -> TrainConfig:
    return reference_config(study(device, size, model, **changes))


def all_on(device: torch.device, size: int, model=TINY, **changes) -> TrainConfig:
    """Every optimisation: the study defaults (chunked search, channels_last, fused Adam, cuDNN
    autotune) plus bf16 autocast and bf16 search matmuls."""
    return study(device, size, model, amp="bf16", search_dtype="bf16", **changes)


def _networks(trainer: Trainer) -> list[torch.nn.Module]:
    nets = (trainer.model, trainer.perceptual, trainer.discriminator, trainer.distance)
    return [n for n in nets if n is not None]


def built(config: TrainConfig, *, emulate_cuda: bool = True) -> Trainer:
    """`build_trainer(config)` with random VGG weights; on the CPU with ``emulate_cuda``, the
    CUDA-only knobs ``config`` turns on applied by hand as the builder applies them on CUDA."""
    trainer = build_trainer(config, load_vgg=False)
    if trainer.device.type != "cpu" or not emulate_cuda:
        return trainer
    if config.channels_last:
        trainer.memory_format = torch.channels_last
        for net in _networks(trainer):
            net.to(memory_format=torch.channels_last)
    if config.fused_optim:
        for optimizer in (trainer.optimizer, trainer.d_optimizer):
            for group in optimizer.param_groups if optimizer is not None else ():
                group["fused"] = True
    return trainer


@pytest.fixture
def exact_fp32():
    """No TF32 anywhere on CUDA while a test compares fp32 paths (`build_trainer` turns TF32
    convolutions on, as PyTorch's default does; the reference path uses them too)."""
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32

    def off() -> None:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False

    yield off
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def _forward(trainer: Trainer, batch: dict[str, torch.Tensor]) -> TTSROutput:
    """All outputs of the model in eval mode (what `Trainer.infer` runs; it returns SR only)."""
    lr, lr_up, _, ref, ref_downup = trainer.inputs(batch)
    trainer.model.eval()
    with torch.no_grad(), trainer.autocast():
        return trainer.model(lr, lr_up, ref, ref_downup)


def _infer(config: TrainConfig, batch: dict[str, torch.Tensor]) -> TTSROutput:
    return _forward(built(config), batch)


def test_both_paths_start_from_the_same_weights():
    cpu = torch.device("cpu")
    a, b = built(reference(cpu, 32)), built(all_on(cpu, 32))
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key].contiguous(), rtol=0, atol=0, msg=key)


def test_chunked_fp32_path_equals_dense_reference(device, exact_fp32):
    x = real_batch(48)
    dense, chunked = built(reference(device, 48)), built(reference(device, 48, search_chunk=7))
    exact_fp32()
    a, b = _forward(dense, x), _forward(chunked, x)  # search_chunk 7: several blocks per image
    for name, ta, tb in zip(a._fields, a, b, strict=True):
        torch.testing.assert_close(tb, ta, rtol=1e-5, atol=1e-5, msg=name)


def _channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last)


def _conv_weights(trainer: Trainer) -> list[torch.Tensor]:
    """The 4-D weights with a spatial kernel (1x1 ones are contiguous in both formats)."""
    return [
        p for net in _networks(trainer) for p in net.parameters() if p.ndim == 4 and p.shape[-1] > 1
    ]


def test_channels_last_equals_contiguous(device, exact_fp32):
    x = real_batch(48)
    a = built(study(device, 48, channels_last=False, amp="off"))
    b = built(study(device, 48, channels_last=True, amp="off"))
    assert a.memory_format == torch.contiguous_format
    assert b.memory_format == torch.channels_last
    assert all(w.is_contiguous() and not _channels_last(w) for w in _conv_weights(a))
    assert all(_channels_last(w) and not w.is_contiguous() for w in _conv_weights(b))
    assert all(_channels_last(t) and not t.is_contiguous() for t in b.inputs(x))
    # The convolutions run NHWC: the first one's output comes out channels_last.
    seen = []
    hook = b.model.MainNet.SFE.conv_head.register_forward_hook(lambda m, i, o: seen.append(o))
    exact_fp32()
    out_a, out_b = _forward(a, x), _forward(b, x)
    hook.remove()
    assert _channels_last(seen[0]) and not seen[0].is_contiguous()
    torch.testing.assert_close(out_b.sr, out_a.sr, rtol=1e-4, atol=1e-4)


def test_cuda_only_knobs_do_nothing_on_the_cpu():
    trainer = built(study(torch.device("cpu"), 32, **ALL_LOSSES), emulate_cuda=False)
    config = trainer.config
    assert config.channels_last and config.fused_optim and config.fast_kernels  # the defaults
    assert trainer.memory_format == torch.contiguous_format
    assert all(w.is_contiguous() and not _channels_last(w) for w in _conv_weights(trainer))
    for optimizer in (trainer.optimizer, trainer.d_optimizer):
        assert all(g["fused"] for g in optimizer.param_groups)  # fused Adam exists for CPUs
    assert trainer.amp_dtype is None  # amp auto = fp32 on the CPU
    assert trainer.model.SearchTransfer.chunk != 0  # the chunked search is not CUDA-only
    assert trainer.model.MainNet.merge_tail.fast_kernels  # nor are MainNet's fast kernels


def test_bf16_optimised_output_is_within_40_db_of_fp32_dense(device):
    x = real_batch(64, count=4)
    # Freshly initialised weights make outputs that depend only weakly on the input, so train
    # the reference path a little first and give both paths those weights.
    trained = built(reference(device, 64, SMALL, lr=1e-3))
    for _ in range(8):  # enough to make the output follow the photo (asserted below)
        trained.train_step(x)
    fast_trainer = built(all_on(device, 64, SMALL))
    fast_trainer.model.load_state_dict(trained.model.state_dict())
    dense = _forward(trained, x).sr.float()
    fast = _forward(fast_trainer, x).sr.float()
    values = psnr(fast, dense)
    assert values.min().item() >= 40.0, values
    # 40 dB alone could still hide errors as large as what the input changes: the bf16 error
    # must also be far (15 dB = 5.6x in RMS) below the differences between the outputs for
    # different photos.
    assert (dense.abs() >= 1.0).float().mean() < 0.5  # not clamped flat
    between_photos = psnr(dense[:-1], dense[1:]).max().item()
    assert values.min().item() >= between_photos + 15.0, (values, between_photos)


def test_bf16_search_picks_patches_as_relevant_as_fp32(device):
    """Where bf16 matmuls change the argmax, the chosen patch is a near-tie in fp32."""
    x = real_batch(64, count=4)
    trainer = built(reference(device, 64))
    with torch.no_grad():
        _, _, q = trainer.model.LTE((x["LR_up"].to(device) + 1) / 2)
        _, _, k = trainer.model.LTE((x["Ref_downup"].to(device) + 1) / 2)
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


def _floats(losses: StepLosses) -> dict[str, float]:
    out = {k: float(v) for k, v in losses.generator.items()}
    if losses.critic:
        out[names.LOSS_D] = float(losses.critic[-1])
    return out


def _losses(trainers: list[Trainer], x, steps: int = 2) -> list[list[dict[str, float]]]:
    """``steps`` training steps of each trainer on ``x``, the same RNG draws for each."""
    runs = []
    for trainer in trainers:
        torch.manual_seed(1)  # the gradient penalty draws from the global RNG
        runs.append([_floats(trainer.train_step(x)) for _ in range(steps)])
    return runs


def test_fp32_optimised_training_steps_match_the_reference(device, exact_fp32):
    x = real_batch(48)
    trainers = [built(reference(device, 48)), built(study(device, 48, amp="off"))]
    exact_fp32()
    a, b = _losses(trainers, x)
    for la, lb in zip(a, b, strict=True):
        assert lb.keys() == la.keys()
        for key in la:
            assert lb[key] == pytest.approx(la[key], rel=1e-4, abs=1e-6), key
    total = names.LOSS_TOTAL
    assert a[1][total] < a[0][total] + 1e-3  # the steps train (or at least do not diverge)


@pytest.mark.parametrize(
    "weights, steps",
    [(REC_ONLY, 2), pytest.param(ALL_LOSSES, 1, marks=pytest.mark.slow)],
    ids=["rec", "all"],
)
def test_all_optimisations_training_steps_stay_close(weights, steps, device):
    x = real_batch(32)
    trainers = [built(reference(device, 32, **weights)), built(all_on(device, 32, **weights))]
    a, b = _losses(trainers, x, steps)
    for la, lb in zip(a, b, strict=True):
        assert lb.keys() == la.keys()
        # bf16 keeps ~3 significant digits; the critic's WGAN-GP loss is a difference of large
        # terms, so it gets an absolute tolerance too.
        for key in la:
            assert lb[key] == pytest.approx(la[key], rel=5e-2, abs=5e-2), key
    assert all(np.isfinite(v) for step in b for v in step.values())
