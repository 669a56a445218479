"""`train.optimizer: muon`: torch's Muon for a network's hidden weight matrices, fused AdamW for the rest.

Muon (Keller Jordan, 2024; `torch.optim.Muon`) replaces each hidden matrix's momentum update by its nearest
semi-orthogonal matrix, five Newton-Schulz iterations: every direction of the update moves by about the same amount,
where Adam's moves mostly along a few. It is defined for 2-D hidden weights only; the embeddings, the output layer,
biases, norms and convolution kernels keep AdamW, as in the Muon paper's and torch's own examples.

torch's Muon runs the iterations in bfloat16, which is native on a GPU or a CPU with AVX512-BF16 / AMX and
emulated, far slower, elsewhere: `make run`'s decoder stepped 1.03 s instead of 0.15 s on an AVX2-only CPU. Where
the machine does not compute bf16 natively (`train.amp: auto` would train in fp32 there), `Muon32` runs the same
iterations in float32.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim._muon import _adjust_lr  # torch's per-matrix lr scaling, so both Muon classes step alike

from components.config import TrainConfig
from components.train.precision import resolve_amp


def hidden_matrices(model: nn.Module) -> set[int]:
    """ids of the weights Muon takes: every nn.Linear's 2-D weight except the output layer's (the model's last
    nn.Linear) and any shared with an nn.Embedding (a tied LM head reads tokens in and writes them out)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    tied = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {id(m.weight) for m in linears[:-1] if id(m.weight) not in tied}


def orthogonalize(g: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float) -> Tensor:
    """(m, n) -> about the semi-orthogonal factor U V^T of g = U S V^T, in float32: torch.optim.Muon's quintic
    Newton-Schulz iteration (singular values end between about 0.5 and 1.5, which trains as well as exact 1)."""
    a, b, c = coefficients
    x = g.float()
    tall = x.size(0) > x.size(1)
    x = x.T if tall else x  # (k, K), k <= K: the Gram matrix is the small side
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.T  # (k, k)
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x.T if tall else x).to(g.dtype)


class Muon32(torch.optim.Muon):
    """torch.optim.Muon with the Newton-Schulz iterations in float32; the same update otherwise (momentum,
    Nesterov, decoupled weight decay, the `adjust_lr_fn` scaling)."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
                update = orthogonalize(update, group["ns_coefficients"], group["ns_steps"], group["eps"])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-_adjust_lr(group["lr"], group["adjust_lr_fn"], p.shape))


class MuonAdamW(torch.optim.Optimizer):
    """One optimizer over two: Muon for the hidden matrices, AdamW for every other parameter. `param_groups` is
    both's groups (Muon's first), the same dicts, so a scheduler or warm-up that sets a group's lr sets it where
    that optimizer reads it; the state dict holds both."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer) -> None:
        self.parts = {"muon": muon, "adamw": adamw}
        params = [p for part in self.parts.values() for g in part.param_groups for p in g["params"]]
        super().__init__(params, muon.defaults)  # Muon's `momentum`: what onecycle cycles
        self.param_groups = muon.param_groups + adamw.param_groups  # the parts' own dicts; state stays theirs

    def step(self, closure: Any = None) -> None:
        for part in self.parts.values():
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name, part in self.parts.items():
            part.load_state_dict(state_dict[name])


def make_muon(model: nn.Module, groups: Iterable[dict[str, Any]], cfg: TrainConfig) -> MuonAdamW:
    """Split each parameter group (a transfer's backbone and head keep their own lr) into its hidden matrices
    and the rest. Muon's lr is scaled per matrix to AdamW's update size (`match_rms_adamw`), so one `train.lr`
    and one schedule serve both; `train.l2` is both's decoupled weight decay, `train.momentum` Muon's."""
    hidden = hidden_matrices(model)
    split: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for group in groups:
        params = list(group["params"])
        for is_hidden in (True, False):
            chosen = [p for p in params if (id(p) in hidden) == is_hidden]
            if chosen:
                split[is_hidden].append({**group, "params": chosen})
    if not split[True]:
        why = (
            "every hidden nn.Linear matrix is frozen (a transfer that trains only the head)"
            if hidden
            else "no hidden nn.Linear matrix"
        )
        raise ValueError(f"train.optimizer muon: {type(model).__name__} has {why}; use adamw")
    native = resolve_amp("auto", next(model.parameters()).device) == "bf16"
    kind = torch.optim.Muon if native else Muon32
    muon = kind(split[True], lr=cfg.lr, weight_decay=cfg.l2, momentum=cfg.momentum, adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW(split[False], lr=cfg.lr, weight_decay=cfg.l2, fused=True)
    return MuonAdamW(muon, adamw)
