"""The training loop's options on toy tensors: each would fail if the option did nothing."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from components.config import TrainConfig
from components.train.loop import TrainingError, fit
from components.train.optim import make_optimizer
from components.train.precision import resolve_amp
from tests.helpers.engine import BCE, cfg, run


def lrs(c: TrainConfig) -> list[float]:
    return [h["lr"] for h in run(c)[1].history]


def test_adamw_decay_is_decoupled_adam_is_coupled() -> None:
    """With a zero loss gradient, AdamW shrinks weights by exactly lr * wd; Adam normalises the decay away."""
    results = {}
    for name in ("adam", "adamw"):
        w = torch.nn.Parameter(torch.tensor([2.0, -4.0]))
        opt = make_optimizer([w], cfg(optimizer=name, lr=0.1, l2=0.5))
        (w * 0).sum().backward()
        opt.step()
        results[name] = w.detach()
    assert torch.allclose(results["adamw"], torch.tensor([2.0, -4.0]) * (1 - 0.1 * 0.5))
    assert torch.allclose(results["adam"], torch.tensor([2.0 - 0.1, -4.0 + 0.1]), atol=1e-5)


def test_nesterov_changes_the_trajectory() -> None:
    plain = run(cfg(optimizer="momentum", lr=0.05))[0]
    nesterov = run(cfg(optimizer="momentum", lr=0.05, nesterov=True))[0]
    assert not torch.allclose(plain.head.weight, nesterov.head.weight)


def test_schedules() -> None:
    step = lrs(cfg(lr=0.1, epochs=4, scheduler={"name": "step", "step_size": 2, "gamma": 0.5}))
    assert step == pytest.approx([0.1, 0.1, 0.05, 0.05])  # the rate each epoch trained with
    cosine = lrs(cfg(lr=0.1, epochs=4, scheduler={"name": "cosine", "min_lr": 0.01}))
    assert cosine == sorted(cosine, reverse=True) and cosine[-1] == pytest.approx(0.01)  # min_lr after the last step
    onecycle = lrs(cfg(lr=0.1, epochs=6, scheduler={"name": "onecycle"}))
    assert max(onecycle) > onecycle[0] and max(onecycle) > onecycle[-1]
    warm = lrs(cfg(lr=0.1, epochs=3, scheduler={"name": "step", "warmup_epochs": 2, "step_size": 1, "gamma": 0.5}))
    assert warm == pytest.approx([0.05, 0.1, 0.1])  # linear warm-up over 2 epochs, then the schedule
    assert lrs(cfg(lr=0.1, epochs=4, scheduler={"name": "step", "warmup_epochs": 2, "step_size": 1}))[-1] < 0.1
    plateau = lrs(cfg(lr=0.1, epochs=6, scheduler={"name": "plateau", "patience": 0, "factor": 0.5}, l2=50.0))
    assert plateau[-1] < 0.1


def test_cosine_decays_every_step_after_the_warm_up() -> None:
    """Per step, not per epoch: the warm-up rises linearly, then each step trains with a lower rate than the one
    before, down to min_lr after the last (a per-epoch staircase held each epoch's rate and ended above min_lr)."""
    seen: list[float] = []  # the rate of each optimizer step, 4 steps an epoch
    handle = register_optimizer_step_pre_hook(lambda opt, *_: seen.append(opt.param_groups[0]["lr"]))
    try:
        c = cfg(lr=0.1, epochs=4, scheduler={"name": "cosine", "warmup_epochs": 1, "min_lr": 0.01})
        history = run(c)[1].history
    finally:
        handle.remove()
    assert seen[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])  # the warm-up epoch
    decay = seen[4:]
    assert len(decay) == 12 and decay[0] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))
    assert decay[6] == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi / 2)))  # half-way down
    assert history[-1]["lr"] == pytest.approx(0.01)


@pytest.mark.parametrize("kind", ["norm", "value"])
def test_gradient_clipping_bounds_what_the_optimizer_sees(kind: str) -> None:
    seen: list[float] = []

    def record(opt, *_):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        seen.append(float(total) if kind == "norm" else max(float(g.abs().max()) for g in grads))

    handle = register_optimizer_step_pre_hook(record)
    try:
        run(cfg(lr=1.0, gradients={f"clip_{kind}": 0.01}))
    finally:
        handle.remove()
    assert seen and max(seen) <= 0.01 + 1e-6


def test_gradient_diagnostics_warn_on_vanishing() -> None:
    c = cfg(model={"hidden": [16] * 10, "activation": "sigmoid"}, gradients={"vanish_below": 1e-4}, epochs=2)
    _, result = run(c)
    assert "grad_norm/blocks.0.linear" in result.history[0] and "grad_norm/head" in result.history[0]
    assert any(w.startswith("vanishing: blocks.0.linear") for w in result.gradient_warnings)
    healthy = run(cfg(model={"hidden": [16] * 10, "activation": "relu"}, gradients={"vanish_below": 1e-4}))[1]
    assert not healthy.gradient_warnings


def test_exploding_warning() -> None:
    _, result = run(cfg(lr=1.0, gradients={"explode_above": 1e-3}))
    assert any(w.startswith("exploding:") for w in result.gradient_warnings)


def test_bf16_autocast_trains_and_fp16_needs_cuda() -> None:
    _, result = run(cfg(amp="bf16", lr=0.05, epochs=6))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="fp16 needs a CUDA device"):
            run(cfg(amp="fp16"))


@pytest.mark.parametrize(
    ("caps", "expected"),
    [({"avx512_bf16": True}, "bf16"), ({"amx_bf16": True}, "bf16"), ({"avx512_bf16": False, "avx2": True}, "none")],
)
def test_amp_auto_is_bf16_only_on_a_cpu_that_computes_it_natively(
    caps: dict, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Emulated bf16 is slower than fp32, so `auto` takes it only with AVX512-BF16 or AMX; explicit values stay."""
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) == expected
    assert resolve_amp("none", cpu) == "none" and resolve_amp("bf16", cpu) == "bf16"
    _, result = run(cfg(amp="auto", lr=0.05, epochs=6))  # trains either way
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]


def test_dataloader_path_gives_the_same_weights() -> None:
    on_device = run(cfg())[0]
    streamed = run(cfg(device_data_max_mb=0, num_workers=0))[0]
    for a, b in zip(on_device.parameters(), streamed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_channels_last_and_batch_transform_for_images() -> None:
    """A 4-D training batch reaches the model channels-last, after the on-device transform."""
    seen: list[bool] = []

    class Conv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.head = torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 1)

        def forward(self, x):
            if self.training:
                seen.append(x.is_contiguous(memory_format=torch.channels_last))
            return self.head(self.conv(x).mean((2, 3)))

    x = torch.randn(32, 3, 6, 6)
    y = (x.mean((1, 2, 3)) > 0).float().reshape(-1, 1)
    flips = {"n": 0}

    def flip(batch):
        flips["n"] += 1
        return batch.flip(-1)

    fit(Conv(), BCE, (x, y), (x, y), cfg(channels_last=True, epochs=1), transform=flip, progress=False)
    assert seen == [True, True] and flips["n"] == 2
