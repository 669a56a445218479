"""Encoder-decoder tasks (kind tokens, objective seq2seq; task `seq2seq`, numbers to English words):
`POST /translate`, sources in, greedy translations out.

model.onnx maps (B, 2, T) ids (row 0 the source, row 1 the target so far, BOS first, both padded) to next-token
logits (B, T, V); greedy decoding reruns it once per target token for the whole batch (the graph has no KV
cache; the PyTorch model's cached `translate` gives the same tokens, see
tests/integration/serving/test_serving_seq2seq.py). Each source is checked on its own before it joins an
adaptive batch: only the characters the model reads (meta.json's one-character vocabulary entries) and at most
`max_len` of them. Run: `dlpipe serve --task seq2seq`
(serving/app.py).
"""

# No `from __future__ import annotations`: BentoML reads the endpoint's annotations, built here at run time.
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, Field

from components.core.tokens import SEQ2SEQ_SPECIALS as SPECIALS
from serving import schemas, service, telemetry
from serving.bundle import Bundle
from serving.session import make_session


class Translation(BaseModel):
    text: str = Field(description="the greedy translation, words separated by spaces")
    tokens: int = Field(description="target tokens generated, EOS included")
    complete: bool = Field(description="the model ended it with EOS (else it stopped at max_len tokens)")


class Seq2SeqTask(service.Task):
    family = "seq2seq"

    def __init__(self, bundle: Bundle) -> None:
        super().__init__(bundle)
        self.vocab: list[str] = self.meta.vocab
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.alphabet = "".join(sorted(t for t in self.vocab if len(t) == 1 and t not in SPECIALS))
        self.max_len = self.meta.model_inputs["max_len"]
        self.pad, self.bos, self.eos, _ = (self.index[t] for t in SPECIALS)

    def details(self) -> dict[str, Any]:
        return {"source_characters": self.alphabet, "max_len": self.max_len, "max_texts": schemas.MAX_ITEMS}

    def load(self) -> None:
        self.session = make_session(self.bundle, self.threads)

    def warm_up(self) -> None:
        self.translate([self.alphabet[0]])

    def translate(self, sources: list[str]) -> list[Translation]:
        """Greedy decoding of a batch: one model call per target position, all sources together."""
        n, width = len(sources), max(map(len, sources))
        src = np.full((n, width), self.pad, dtype=np.int64)
        for row, text in enumerate(sources):
            src[row, : len(text)] = [self.index[c] for c in text]
        tgt = np.full((n, self.max_len + 1), self.pad, dtype=np.int64)
        tgt[:, 0] = self.bos
        done = np.zeros(n, dtype=bool)
        lengths = np.full(n, self.max_len)
        for k in range(self.max_len):
            length = max(width, k + 1)
            pair = np.full((n, 2, length), self.pad, dtype=np.int64)  # both rows padded to one length, as in training
            pair[:, 0, :width], pair[:, 1, : k + 1] = src, tgt[:, : k + 1]
            logits = self.session.run([self.meta.output.name], {self.meta.input.name: pair})[0]
            tgt[:, k + 1] = np.where(done, self.pad, logits[:, k].argmax(-1))
            ended = ~done & (tgt[:, k + 1] == self.eos)
            lengths[ended] = k + 1
            done |= ended
            if done.all():
                break
        out = [[self.vocab[i] for i in row[1 : m + 1]] for row, m in zip(tgt, lengths.tolist(), strict=True)]
        return [
            Translation(text=" ".join(w for w in words if w not in SPECIALS), tokens=len(words), complete=ok)
            for words, ok in zip(out, done.tolist(), strict=True)
        ]

    def source_type(self) -> Any:
        alphabet, alphabet_text, max_len = set(self.alphabet), self.alphabet, self.max_len

        def check(text: str) -> str:
            unknown = sorted(set(text) - alphabet)
            if unknown:
                wanted = f"it reads {alphabet_text!r}"
                raise ValueError(f"characters the model does not read: {''.join(unknown)!r} ({wanted})")
            return text

        example = self.alphabet[: min(4, len(self.alphabet))]
        return Annotated[
            str, Field(strict=True, min_length=1, max_length=max_len, examples=[example]), AfterValidator(check)
        ]

    def apis(self) -> dict[str, service.Api]:
        Sources = Annotated[list[self.source_type()], Field(min_length=1, max_length=schemas.MAX_ITEMS)]

        def translate(_: Any, texts: Sources) -> list[Translation]:
            """Translate each source (`{"texts": ["40213", ...]}`) greedily, e.g. 40213 -> "forty thousand two
            hundred thirteen"."""
            telemetry.observe_batch(self.name, "translate", len(texts))
            return self.translate(texts)

        return {"translate": service.Api(translate, batchable=True)}
