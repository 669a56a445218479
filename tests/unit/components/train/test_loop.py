"""The generic training loop on toy tensors: optimizers, penalties, batching, early stopping, resume, NaN."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

from components.config import TrainConfig
from components.train.batches import TOKEN_CHUNK, predict
from components.train.loop import TrainingError, evaluate_loss, fit, l1_penalty, seed_everything
from components.train.optim import make_optimizer
from models import build_model
from tests.helpers.engine import toy


def cfg(**kw) -> TrainConfig:
    base = {"epochs": 5, "early_stopping": {"enabled": False}, "model": {"hidden": [8]}}
    return TrainConfig.model_validate({**base, **kw})


def model_for(c: TrainConfig, out: int = 1) -> torch.nn.Module:
    seed_everything(c.seed)
    return build_model("ffn", in_features=4, out_features=out, **c.model.kwargs())


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "rmsprop", "adam", "adamw", "muon"])
def test_each_optimizer_steps_and_learns(optimizer: str) -> None:
    c = cfg(optimizer=optimizer, lr=0.05, epochs=20, batch_size=16)
    net = model_for(c)
    before = [p.detach().clone() for p in net.parameters()]
    x, y = toy()
    result = fit(net, F.binary_cross_entropy_with_logits, (x, y), toy(32, 1), c, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_validation_runs_under_the_training_autocast() -> None:
    """train.amp bf16: the validation passes run in bf16 as the training steps do, and their loss matches a float32
    evaluation of the same weights to bf16's precision."""
    c = cfg(amp="bf16", epochs=2, batch_size=16)
    net = model_for(c)
    seen: list[tuple[bool, torch.dtype]] = []
    net.register_forward_hook(lambda module, args, out: seen.append((module.training, out.dtype)))
    val = toy(32, 1)
    result = fit(net, F.binary_cross_entropy_with_logits, toy(), val, c, progress=False)
    assert {dtype for training, dtype in seen if not training} == {torch.bfloat16}
    float32 = evaluate_loss(net, F.binary_cross_entropy_with_logits, *val, None)["val_loss"]
    assert result.history[-1]["val_loss"] == pytest.approx(float32, rel=2e-2)


def test_momentum_changes_the_trajectory() -> None:
    x, y = toy()
    runs = {}
    for opt in ("gd", "momentum"):
        c = cfg(optimizer=opt, lr=0.05, epochs=3)
        net = model_for(c)
        fit(net, F.binary_cross_entropy_with_logits, (x, y), toy(32, 1), c, progress=False)
        runs[opt] = torch.cat([p.flatten() for p in net.parameters()])
    assert not torch.allclose(runs["gd"], runs["momentum"])


@pytest.mark.parametrize(("batch_size", "steps"), [("full", 1), (16, 4), (1, 64)])
def test_batch_size_sets_steps_per_epoch(batch_size: object, steps: int) -> None:
    c = cfg(batch_size=batch_size, epochs=1)
    net = model_for(c)
    count = {"n": 0}
    handle = register_optimizer_step_post_hook(lambda *_: count.__setitem__("n", count["n"] + 1))
    try:
        fit(net, F.binary_cross_entropy_with_logits, toy(), toy(32, 1), c, progress=False)
    finally:
        handle.remove()
    assert count["n"] == steps


def test_l1_penalty_gradient_is_sign_of_weights() -> None:
    net = torch.nn.Linear(4, 2)
    l1_penalty(net).backward()
    assert torch.equal(net.weight.grad, torch.sign(net.weight.detach()))
    assert net.bias.grad is None  # biases are not penalised


def test_l2_is_coupled_weight_decay() -> None:
    """One SGD step with l2 differs from one without by exactly lr * l2 * w."""
    net = torch.nn.Linear(4, 1)
    x, y = toy(8)
    w0, b0 = net.weight.detach().clone(), net.bias.detach().clone()
    steps = {}
    for l2 in (0.0, 0.5):
        net.weight.data.copy_(w0)
        net.bias.data.copy_(b0)
        opt = make_optimizer(net.parameters(), cfg(optimizer="gd", lr=0.1, l2=l2))
        opt.zero_grad()
        F.mse_loss(net(x), y).backward()
        opt.step()
        steps[l2] = net.weight.detach().clone()
    assert torch.allclose(steps[0.0] - steps[0.5], 0.1 * 0.5 * w0, atol=1e-6)


def test_l1_drives_weights_toward_zero() -> None:
    x, y = toy(128)
    norms = {}
    for l1 in (0.0, 0.01):
        c = cfg(optimizer="adam", lr=0.02, epochs=30, l1=l1)
        net = model_for(c)
        fit(net, F.binary_cross_entropy_with_logits, (x, y), toy(32, 1), c, progress=False)
        norms[l1] = float(l1_penalty(net).detach())
    assert norms[0.01] < 0.7 * norms[0.0]


def test_early_stopping_stops_and_restores_best(tmp_path) -> None:
    x, y = toy(64)
    xv = torch.randn(32, 4)
    yv = torch.randint(0, 2, (32, 1)).float()  # noise: validation loss soon rises
    c = cfg(optimizer="adam", lr=0.05, epochs=200, early_stopping={"patience": 3})
    net = model_for(c)
    result = fit(
        net, F.binary_cross_entropy_with_logits, (x, y), (xv, yv), c, checkpoint=tmp_path / "c.pt", progress=False
    )
    assert result.stopped_early and result.epochs_run == result.best_epoch + 3 < 200
    losses = [h["val_loss"] for h in result.history]
    assert result.best_score == min(losses)
    with torch.no_grad():
        restored = float(F.binary_cross_entropy_with_logits(net.eval()(xv), yv))
    assert restored == pytest.approx(min(losses), abs=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "muon"])  # muon: two optimizers' states in one checkpoint
def test_resume_continues_to_the_same_weights(tmp_path, optimizer: str) -> None:
    x, y = toy()
    full = cfg(epochs=6, batch_size=8, optimizer=optimizer)
    net = model_for(full)
    fit(net, F.binary_cross_entropy_with_logits, (x, y), toy(32, 1), full, progress=False)

    half = cfg(epochs=3, batch_size=8, optimizer=optimizer)
    ckpt = tmp_path / "c.pt"
    resumed = model_for(half)
    fit(resumed, F.binary_cross_entropy_with_logits, (x, y), toy(32, 1), half, checkpoint=ckpt, progress=False)
    seed_everything(123)  # a different global RNG state must not matter after resume
    fit(
        resumed,
        F.binary_cross_entropy_with_logits,
        (x, y),
        toy(32, 1),
        full,
        checkpoint=ckpt,
        resume=True,
        progress=False,
    )
    for a, b in zip(net.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_nan_loss_stops_without_overwriting_checkpoint(tmp_path) -> None:
    x, y = toy()
    c = cfg(epochs=2)
    ckpt = tmp_path / "c.pt"
    fit(model_for(c), F.binary_cross_entropy_with_logits, (x, y), toy(32, 1), c, checkpoint=ckpt, progress=False)
    before = ckpt.read_bytes()
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(TrainingError, match="nan"):
        fit(model_for(c), F.binary_cross_entropy_with_logits, (bad, y), toy(32, 1), c, checkpoint=ckpt, progress=False)
    assert ckpt.read_bytes() == before


def test_resume_loads_the_checkpoint_onto_the_cpu_whatever_the_training_device(tmp_path) -> None:
    """A GPU run resumes: the RNG states must stay CPU tensors (torch.set_rng_state refuses any other). The meta
    device stands in for the GPU: a checkpoint mapped onto the training device cannot be restored."""
    from components.train.loop import _resume, _Run

    x, y = toy()
    c = cfg(epochs=2, batch_size=8)
    ckpt = tmp_path / "c.pt"
    fit(model_for(c), F.binary_cross_entropy_with_logits, (x, y), toy(32, 1), c, checkpoint=ckpt, progress=False)
    run = _Run(model_for(c), (x, y), toy(32, 1), c, torch.device("cpu"), None)
    run.device = torch.device("meta")  # the device the loop trains on: not the CPU
    seed_everything(7)
    best, state = _resume(ckpt, run)
    assert state["epoch"] == 2 and all(t.device.type == "cpu" for t in best.values())
    assert torch.equal(torch.get_rng_state(), torch.load(ckpt, weights_only=True)["rng"]["torch"])


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_resume_with_another_epoch_count_refuses_an_epoch_shaped_schedule(tmp_path, scheduler: str) -> None:
    x, y = toy()
    two, four = cfg(epochs=2, scheduler={"name": scheduler}), cfg(epochs=4, scheduler={"name": scheduler})
    ckpt = tmp_path / "c.pt"
    fit(model_for(two), F.binary_cross_entropy_with_logits, (x, y), toy(32, 1), two, checkpoint=ckpt, progress=False)
    before = ckpt.read_bytes()
    with pytest.raises(TrainingError, match=r"train\.epochs=2, not 4, and train\.scheduler .* resume with train"):
        fit(model_for(four), F.binary_cross_entropy_with_logits, (x, y), toy(32, 1), four, checkpoint=ckpt,
            resume=True, progress=False)  # fmt: skip
    one = cfg(epochs=1, scheduler={"name": scheduler})
    with pytest.raises(TrainingError, match="is at epoch 2, past train.epochs=1"):
        fit(model_for(one), F.binary_cross_entropy_with_logits, (x, y), toy(32, 1), one, checkpoint=ckpt,
            resume=True, progress=False)  # fmt: skip
    assert ckpt.read_bytes() == before


def test_resume_from_a_truncated_checkpoint_names_it_and_keeps_it(tmp_path) -> None:
    """A checkpoint cut short (a copy that stopped, a full disk elsewhere) is one error naming the file; resuming
    does not start over on top of it."""
    from components.core.errors import DataError

    x, y = toy()
    c = cfg(epochs=2, batch_size=8)
    ckpt = tmp_path / "c.pt"
    fit(model_for(c), F.binary_cross_entropy_with_logits, (x, y), toy(32, 1), c, checkpoint=ckpt, progress=False)
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    before = ckpt.read_bytes()
    with pytest.raises(DataError, match=f"{ckpt} is not a readable checkpoint, truncated or corrupt"):
        fit(model_for(c), F.binary_cross_entropy_with_logits, (x, y), toy(32, 1), c, checkpoint=ckpt, resume=True,
            progress=False)  # fmt: skip
    assert ckpt.read_bytes() == before


def test_predict_scores_texts_in_order_of_length_and_answers_in_the_callers_order() -> None:
    """With pad_id each chunk is as long as its longest text (the model cuts the rest), outputs in x's order."""
    torch.manual_seed(0)
    model = build_model("rnn", out_features=2, vocab_size=30, hidden=8, embedding_dim=4, bidirectional=True)
    model.eval()
    widths: list[int] = []
    model.embedding.register_forward_hook(lambda _m, args, _out: widths.append(args[0].shape[1]))
    lengths = torch.randint(1, 41, (3 * TOKEN_CHUNK,))
    ids = torch.where(torch.arange(40) < lengths[:, None], torch.randint(1, 30, (len(lengths), 40)), 0)
    by_length = predict(model, ids, pad_id=0)
    assert widths == sorted(widths) and len(widths) == 3 and widths[0] < 40  # ascending chunks, cut short
    torch.testing.assert_close(by_length, predict(model, ids), atol=1e-5, rtol=0)  # as one full-length batch


def test_a_masked_lm_scores_only_its_masked_positions_with_the_same_loss_and_gradients() -> None:
    """Training hands the MLM the positions that have a target, so the vocabulary-wide output layer runs on those
    alone; the loss and every gradient are those of scoring all positions with the rest ignored."""
    from components.core.tokens import IGNORE
    from components.train.objectives import loss_fn
    from models.transformer import EncoderModel

    torch.manual_seed(0)
    model = EncoderModel(60, 16, 60, head="mlm", d_model=32, n_layers=2, n_heads=2, dropout=0.0)
    ids = torch.randint(1, 60, (8, 16))
    y = torch.full_like(ids, IGNORE)
    picked = torch.rand(8, 16) < 0.15
    y[picked] = torch.randint(1, 60, (int(picked.sum()),))
    loss = loss_fn("masked_lm")
    grads = []
    for scored in (None, y != IGNORE):
        model.zero_grad()
        out = model(ids, scored=scored)
        value = loss(out, y)
        value.backward()
        grads.append((value.detach(), out.shape, [p.grad.clone() for p in model.parameters()]))
    (full, full_shape, full_grads), (sparse, sparse_shape, sparse_grads) = grads
    assert full_shape == (8, 16, 60) and sparse_shape == (int(picked.sum()), 60)
    torch.testing.assert_close(sparse, full)
    for a, b in zip(sparse_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)

    heads: list[tuple[int, ...]] = []  # what the output layer is given: in training the N targets, in validation all
    model.head.register_forward_hook(lambda _m, args, _out: heads.append(tuple(args[0].shape)))
    before = float(evaluate_loss(model, loss, ids, y, None)["val_loss"])
    fit(model, loss, (ids, y), (ids, y), cfg(epochs=30, batch_size=8, optimizer="adam", lr=0.01), progress=False)
    after = float(evaluate_loss(model, loss, ids, y, None)["val_loss"])
    assert heads[1] == (int(picked.sum()), 32) and heads[-1] == (8, 16, 32)
    assert after < 0.5 * before  # it learns the masked tokens
