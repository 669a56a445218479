"""Feed-forward network: hidden blocks Linear -> [BatchNorm | LayerNorm] -> activation -> [Dropout],
optionally with residual connections, then a linear head. `init` "auto" picks He init for ReLU and
Xavier for tanh / sigmoid; "default" keeps PyTorch's.

The head emits raw scores (logits, or a scaled value for regression); the loss and the exported
model add sigmoid / softmax, so training uses the numerically stable "with logits" losses.
"""

from __future__ import annotations

from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
NORMS: dict[str, type[nn.Module]] = {"none": nn.Identity, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


class Block(nn.Module):
    """One hidden layer; with `residual` (and equal widths) the input skips around it: x + f(x)."""

    def __init__(self, width_in: int, width_out: int, activation: str, norm: str, dropout: float, residual: bool):
        super().__init__()
        self.linear = nn.Linear(width_in, width_out)
        self.norm = NORMS[norm](width_out) if norm != "none" else nn.Identity()
        self.act = ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual and width_in == width_out

    def forward(self, x: Tensor) -> Tensor:  # (B, width_in) -> (B, width_out)
        out = self.drop(self.act(self.norm(self.linear(x))))
        return x + out if self.residual else out


class FFN(nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: list[int],
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str = "none",
        residual: bool = False,
        init: str = "auto",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
        widths = [in_features, *hidden]
        pairs = zip(widths[:-1], widths[1:], strict=True)
        self.blocks = nn.ModuleList(Block(w_in, w_out, activation, norm, dropout, residual) for w_in, w_out in pairs)
        self.head = nn.Linear(widths[-1], out_features)
        if init != "default":
            self.reset_parameters(activation, init)

    def reset_parameters(self, activation: str, init: str) -> None:
        """He (kaiming) init keeps ReLU activations' variance through depth; Xavier suits tanh / sigmoid."""
        scheme = ("kaiming" if activation == "relu" else "xavier") if init == "auto" else init
        for block in self.blocks:
            if scheme == "kaiming":
                nn.init.kaiming_normal_(block.linear.weight, nonlinearity="relu")
            else:
                nn.init.xavier_normal_(block.linear.weight, gain=nn.init.calculate_gain(activation))
            nn.init.zeros_(block.linear.bias)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, in_features) -> (B, out_features)
        for block in self.blocks:
            x = block(x)
        return self.head(x)
