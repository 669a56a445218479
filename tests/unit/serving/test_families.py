"""The family that serves a bundle comes from its kind and what its export carries, never its name."""

from __future__ import annotations

import pytest

from components.core.contract import KINDS
from serving import families
from serving.bundle import Contents
from tests.helpers.serving import toy_meta


def test_family_comes_from_the_kind_and_what_the_model_carries() -> None:
    """Families are picked by meta.json's kind (and objective), then by the extra graphs the export wrote; the
    task's name plays no part (every bundle here is named `digits`)."""

    def family(kind: str, objective: str = "binary", carries: tuple[str, ...] = ()) -> str:
        meta = toy_meta(kind, objective, task="digits")
        return families.family_of(Contents(meta, frozenset(carries), "test")).name

    text_graphs = ("tokenizer.json", "embeddings.onnx", "attention.onnx")
    assert family("tabular") == family("tabular", "regression") == "tabular"
    assert family("image", "multiclass") == "image"
    assert family("series", "regression") == "forecast"
    assert family("text", carries=("tokenizer.json",)) == "text"
    assert family("text", carries=text_graphs) == "encoder"  # /embed and /attention come with the graphs
    assert family("tokens", "causal_lm", ("attention.onnx",)) == "decoder"
    assert family("tokens", "seq2seq") == "seq2seq"
    with pytest.raises(families.NothingToServe, match="objective masked_lm.*masked-LM"):
        family("tokens", "masked_lm", text_graphs)
    with pytest.raises(families.NothingToServe, match="lacks attention.onnx"):
        family("tokens", "causal_lm")
    with pytest.raises(families.NothingToServe, match="lacks tokenizer.json"):
        family("text")
    served = {kind for kind, _ in families.SERVED}
    assert served == set(KINDS)  # every kind has a family (or, per objective, a reason there is none)
    for name, fam in families.FAMILIES.items():
        assert fam.task_class().family == name  # what /info reports and the settings are keyed by
