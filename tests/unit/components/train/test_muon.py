"""train.optimizer muon: which weights Muon takes, its float32 iteration against torch's, and the joint optimizer
under a schedule."""

from __future__ import annotations

import pytest
import torch

from components.train.muon import Muon32, hidden_matrices, orthogonalize
from components.train.optim import make_optimizer, make_scheduler
from models import build_model
from tests.helpers.engine import cfg, run


def names(model: torch.nn.Module) -> set[str]:
    hidden = hidden_matrices(model)
    return {n for n, p in model.named_parameters() if id(p) in hidden}


def test_muon_takes_the_hidden_matrices_not_embeddings_output_or_kernels() -> None:
    decoder = build_model("transformer", arch="decoder", vocab_size=11, max_len=8, d_model=16, n_layers=2, n_heads=2)
    taken = names(decoder)
    assert taken and all(n.startswith("decoder.blocks.") and n.endswith(".weight") for n in taken)
    assert len(taken) == 2 * 5  # per block: query, key_value, proj and the feed-forward's two; the tied head not
    ffn = build_model("ffn", in_features=4, out_features=3, hidden=[8, 8])
    assert names(ffn) == {"blocks.0.linear.weight", "blocks.1.linear.weight"}  # not the output layer `head`
    cnn = build_model("cnn", in_channels=1, out_features=10, image_size=(28, 28), channels=[4, 8], head=[16])
    assert names(cnn) == {"head.0.weight"}  # the hidden dense layer: not the 4-D kernels, not the output `head.2`


def test_no_hidden_matrix_is_a_clear_error() -> None:
    net = build_model("ffn", in_features=4, out_features=1, hidden=[])
    with pytest.raises(ValueError, match="no hidden nn.Linear matrix; use adamw"):
        make_optimizer(net.parameters(), cfg(optimizer="muon"), net)
    mlp = build_model("ffn", in_features=4, out_features=1, hidden=[8])
    head = [p for n, p in mlp.named_parameters() if n.startswith("head.")]  # what a frozen-backbone transfer trains
    with pytest.raises(ValueError, match="every hidden nn.Linear matrix is frozen .*; use adamw"):
        make_optimizer([{"params": head, "lr": 0.01}], cfg(optimizer="muon"), mlp)


def test_float32_iteration_orthogonalizes_as_torchs_bfloat16_one() -> None:
    g = torch.randn(48, 16, generator=torch.Generator().manual_seed(0))
    ours = orthogonalize(g, (3.4445, -4.775, 2.0315), 5, 1e-7)
    singular = torch.linalg.svdvals(ours)
    assert ours.shape == g.shape and ours.dtype == torch.float32
    assert singular.min() > 0.4 and singular.max() < 1.6  # near 1: every direction moves alike
    assert torch.linalg.svdvals(g).max() / torch.linalg.svdvals(g).min() > 2  # the input's were not
    w32, w16 = (torch.nn.Parameter(torch.zeros(48, 16)) for _ in range(2))
    for w, kind in ((w32, Muon32), (w16, torch.optim.Muon)):
        w.grad = g.clone()
        kind([w], lr=0.1, weight_decay=0.0, adjust_lr_fn="match_rms_adamw").step()
    assert torch.allclose(w32, w16, atol=5e-3) and w32.abs().max() > 0.05  # bf16 rounding apart, the same step


def test_the_schedule_sets_both_parts_lr_and_the_model_learns() -> None:
    c = cfg(
        optimizer="muon",
        lr=0.05,
        epochs=10,
        l2=0.01,
        model={"hidden": [16, 16]},
        scheduler={"name": "cosine", "min_lr": 0.001},
    )
    net, result = run(c)
    assert result.history[-1]["train_loss"] < 0.3 * result.history[0]["train_loss"]  # 0.73 -> 0.16 measured
    opt = make_optimizer(net.parameters(), c, net)
    assert [type(p).__name__ for p in opt.parts.values()] in (["Muon32", "AdamW"], ["Muon", "AdamW"])
    scheduler = make_scheduler(opt, c, steps_per_epoch=4)
    for _ in range(10 * 4):
        opt.step()
        scheduler.step()
    lrs = [g["lr"] for part in opt.parts.values() for g in part.param_groups]
    assert len(lrs) == 2 and lrs == pytest.approx([0.001, 0.001])  # min_lr in Muon's group and in AdamW's
    assert set(opt.state_dict()) == {"muon", "adamw"}


def test_onecycle_cycles_muons_momentum() -> None:
    """onecycle (Fashion-MNIST's schedule) cycles momentum against the lr: Muon's, where AdamW keeps its betas."""
    c = cfg(optimizer="muon", lr=0.05, epochs=4, model={"hidden": [16, 16]}, scheduler={"name": "onecycle"})
    net, result = run(c)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    opt = make_optimizer(net.parameters(), c, net)
    scheduler = make_scheduler(opt, c, steps_per_epoch=4)
    muon = opt.parts["muon"].param_groups[0]
    seen = []
    for _ in range(4 * 4):
        seen.append((muon["lr"], muon["momentum"]))
        opt.step()
        scheduler.step()
    peak = max(range(len(seen)), key=lambda i: seen[i][0])
    assert seen[peak][1] == pytest.approx(min(m for _, m in seen))  # the lowest momentum at the highest lr
    assert opt.parts["adamw"].param_groups[0]["betas"] == (0.9, 0.999)
