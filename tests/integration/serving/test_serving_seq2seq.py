"""The encoder-decoder's endpoint: greedy decoding in ONNX Runtime gives the PyTorch model's cached translation,
token for token, for a whole batch; sources are checked before they reach the model; `POST /translate` answers
over real HTTP and in the playground page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from components.config import TrainConfig, stage_config, validate
from tests.conftest import NEEDS_CHROMIUM, PARAMS
from tests.helpers.playground import open_card
from tests.helpers.serving import bentoml_process


@pytest.fixture(scope="module")
def seq2seq_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Numbers -> words, a small model trained briefly (the translations need not be right to be compared)."""
    from components.data.ingest import ingest
    from components.data.prepare import prepare
    from components.release.export import export
    from components.train.step import train

    root = tmp_path_factory.mktemp("seq2seq")
    art = root / "artifacts/seq2seq"
    ingest("numbers_words", root / "data/raw")
    prepare(root / "data/raw", art / "data", stage_config(PARAMS, "prepare", "seq2seq"), "seq2seq")
    raw = {**PARAMS["train"]["seq2seq"], "epochs": 2, "steps_per_epoch": 40}
    raw["model"] = {**raw["model"], "d_model": 32}
    train(art / "data", art, validate(TrainConfig, raw, "train.seq2seq"), "seq2seq", progress=False)
    export(art / "data", art, art, stage_config(PARAMS, "export", "seq2seq"))
    return art


def test_onnx_greedy_batch_matches_the_pytorch_cached_translation(seq2seq_artifacts: Path) -> None:
    from components.train.checkpoint import load_trained
    from serving.bundle import load_bundle
    from serving.families import family_of

    bundle = load_bundle("seq2seq", model_dir=seq2seq_artifacts)
    family = family_of(bundle)
    assert family.name == "seq2seq"
    task = family.task_class()(bundle)
    task.start()
    model, meta = load_trained(seq2seq_artifacts)
    with np.load(seq2seq_artifacts / "data/test.npz") as data:
        src = data["x"][:64, 0]
    vocab = meta.vocab
    sources = ["".join(vocab[i] for i in row if i > 3) for row in src]  # ids 0..3 are PAD, BOS, EOS, UNK
    reference = model.translate(torch.from_numpy(src), 1, 2, meta.model_inputs["max_len"])
    expected = [" ".join(vocab[i] for i in row if i > 3) for row in reference.tolist()]
    answers = task.translate(sources)  # one batch, sources of different lengths
    assert [a.text for a in answers] == expected
    assert [task.translate([s])[0].text for s in sources[:5]] == expected[:5]  # batching changes nothing
    assert all(a.tokens <= meta.model_inputs["max_len"] for a in answers)


@pytest.fixture(scope="module")
def translator(seq2seq_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"DLPIPE_TASK": "seq2seq", "DLPIPE_MODEL_DIR": str(seq2seq_artifacts)}
    with bentoml_process("serving.app:Service", tmp_path_factory.mktemp("serve-seq2seq"), env) as (_, url):
        yield url


def test_translate_endpoint_checks_each_source(translator: str) -> None:
    with httpx.Client(base_url=translator, timeout=30) as http:
        answer = http.post("/translate", json={"texts": ["40213", "7"]})
        assert answer.status_code == 200, answer.text
        first = answer.json()[0]
        assert set(first) == {"text", "tokens", "complete"} and isinstance(first["text"], str)
        info = http.get("/info").json()
        assert info["task"] == "seq2seq" and info["source_characters"] == "0123456789" and info["max_len"] == 16
        for bad, words in ((["12a4"], "does not read: 'a'"), ([""], "at least 1"), (["1" * 17], "at most 16")):
            refused = http.post("/translate", json={"texts": bad})
            assert refused.status_code == 400 and words in refused.text, (bad, refused.text)
        assert http.post("/translate", json={"texts": []}).status_code == 400


@NEEDS_CHROMIUM
def test_playground_card_shows_the_api_translation(browser, translator: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    card = open_card(browser, translator, "seq2seq")
    number = card.find_element(By.CSS_SELECTOR, ".number")
    number.clear()
    number.send_keys("90817")
    card.find_element(By.CSS_SELECTOR, ".translate").click()
    result = card.find_element(By.CSS_SELECTOR, ".result")
    WebDriverWait(browser, 30).until(lambda _: result.get_attribute("class") in ("result ok", "result error"))
    assert result.get_attribute("class") == "result ok", result.text
    expected = httpx.post(f"{translator}/translate", json={"texts": ["90817"]}).json()[0]["text"]
    assert result.text == (expected or "(nothing: the model ended at once)")
