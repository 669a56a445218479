"""The training loop under torch.compile."""

from __future__ import annotations

from tests.helpers.engine import cfg, run


def test_torch_compile_flag_trains() -> None:
    net, result = run(cfg(compile=True, batch_size="full", epochs=2))
    assert result.epochs_run == 2 and all(not k.startswith("_orig_mod") for k in net.state_dict())
