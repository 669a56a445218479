"""The vanishing-gradients-through-time experiment on a few tiny recurrent nets."""

from __future__ import annotations

from pathlib import Path


def test_vanishing_gradients_through_time_experiment(tmp_path: Path) -> None:
    from components.experiments.vanishing import VanishingRNNConfig, vanishing_gradients_rnn

    cfg = VanishingRNNConfig(length=12, hidden=4, n_train=64, n_val=32, epochs=1)
    results = vanishing_gradients_rnn(tmp_path / "m.json", tmp_path / "p.png", cfg)
    assert set(results) == {"rnn", "lstm", "gru"} and (tmp_path / "p.png").is_file()
    # at initialisation the plain RNN's gradient from step 0 is the smallest: its path has no gate
    assert results["rnn"]["first_over_last_init"] < min(results[c]["first_over_last_init"] for c in ("lstm", "gru"))
