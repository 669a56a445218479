"""Causal language models (kind tokens, objective causal_lm; task `decoder`): `POST /generate`,
`/generate_stream`, `/attention`.

ONNX Runtime only: model.onnx maps ids (1, T) to logits (1, T, V) for any T up to the context length; each new
token reruns the window (the graph has no KV cache; the PyTorch model's cache gives the same tokens, see
tests/integration/models/test_transformer.py). Sampling is components/core/sampling.py's, seeded per request, so a
fixed seed gives the same text. attention.onnx returns every layer's and head's weights. The characters the model
knows are meta.json's vocabulary: a prompt with others is refused (400) naming them.

Generations are long work: both run in the worker's thread pool (the stream too, one token per step, never on
the event loop), at most `max_in_flight_long` at once per route and worker (the guard answers 503 beyond), and
each stops at its next token once the guard has stopped waiting for it (the task's timeout, or the client gone).
Run: `dlpipe serve --task decoder` (serving/app.py).
"""

# No `from __future__ import annotations`: BentoML reads the endpoint's annotations, built here at run time.
from collections.abc import Generator, Iterator
from http import HTTPStatus
from typing import Annotated, Any

import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument
from pydantic import BaseModel, Field

from components.core.sampling import Sampling, generate_onnx
from serving import guard, service
from serving.bundle import Bundle
from serving.session import make_session

MAX_PROMPT_CHARS = 2000
MAX_NEW_TOKENS = 1000


def _oas30(schema: dict[str, Any]) -> None:
    """/docs.json is OpenAPI 3.0, where an exclusive bound is a flag beside `minimum`; pydantic writes the 3.1
    form (`exclusiveMinimum: 0`), which schema validators (and schemathesis) reject."""
    for part in [schema, *schema.get("anyOf", [])]:
        bound = part.get("exclusiveMinimum")
        if isinstance(bound, int | float) and not isinstance(bound, bool):
            part["minimum"], part["exclusiveMinimum"] = bound, True


class Generated(BaseModel):
    text: str = Field(description="the generated continuation (the prompt not included)")
    tokens: int


class Attention(BaseModel):
    tokens: list[str]
    weights: list[list[list[list[float]]]] = Field(description="[layer][head][query][key], each row sums to 1")


class DecoderTask(service.Task):
    family = "decoder"

    def __init__(self, bundle: Bundle) -> None:
        super().__init__(bundle)
        self.vocab: list[str] = self.meta.vocab
        self.index = {c: i for i, c in enumerate(self.vocab)}
        self.window = self.meta.model_inputs["max_len"]  # also the attention limit: one forward pass

    def details(self) -> dict[str, Any]:
        limits = {"prompt_chars": MAX_PROMPT_CHARS, "max_new_tokens": MAX_NEW_TOKENS, "attention_chars": self.window}
        return {"vocabulary": "".join(self.vocab), "context_length": self.window, "limits": limits}

    def load(self) -> None:
        self.session = make_session(self.bundle, self.threads)
        self.attention_session = make_session(self.bundle, self.threads, output="attention")

    def warm_up(self) -> None:
        list(self.tokens(self.vocab[0], 1, 0.0, None, None, 0))
        self.attention(self.vocab[0])

    def encode(self, text: str) -> list[int]:
        unknown = sorted({c for c in text if c not in self.index})
        if unknown:
            raise InvalidArgument(f"characters outside the model's vocabulary: {''.join(unknown)!r}")
        return [self.index[c] for c in text]

    def tokens(self, prompt: str, max_new_tokens: int, temperature: float, top_k, top_p, seed: int) -> Iterator[int]:
        how = Sampling(temperature=temperature, top_k=top_k, top_p=top_p)
        step = lambda ids: self.session.run(None, {"ids": ids})[0]  # noqa: E731
        for token in generate_onnx(step, self.encode(prompt), max_new_tokens, how, seed, self.window):
            if guard.stopped():  # nobody waits for the rest: the timeout passed, or the client left
                return
            yield token

    def attention(self, text: str) -> Attention:
        ids = np.asarray([self.encode(text)], dtype=np.int64)
        weights = self.attention_session.run(None, {"ids": ids})[0][0]  # (L, H, T, T)
        return Attention(tokens=list(text), weights=np.round(weights, 5).tolist())

    def apis(self) -> dict[str, service.Api]:
        Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="text to continue")]
        NewTokens = Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS, description="characters to generate")]
        Temperature = Annotated[float, Field(ge=0, le=5, description="0 = greedy")]
        TopK = Annotated[int | None, Field(ge=1, le=len(self.vocab), description="keep the k likeliest tokens")]
        TopP = Annotated[
            float | None,
            Field(gt=0, le=1, description="keep the smallest set reaching this probability", json_schema_extra=_oas30),
        ]
        Window = Annotated[str, Field(min_length=1, max_length=self.window)]
        Seed = Annotated[int, Field(ge=0, le=2**63 - 1, description="random generator seed (numpy's: non-negative)")]

        def generate(
            _: Any,
            prompt: Prompt,
            max_new_tokens: NewTokens = 200,
            temperature: Temperature = 0.8,
            top_k: TopK = None,
            top_p: TopP = None,
            seed: Seed = 0,
        ) -> Generated:
            """Continue `prompt`; the same seed and settings always give the same text."""
            ids = list(self.tokens(prompt, max_new_tokens, temperature, top_k, top_p, seed))
            if guard.stopped():  # cut short: never answer a partial text as if it were whole
                raise BentoMLException("generation stopped at the task's timeout", error_code=HTTPStatus(504))
            return Generated(text="".join(self.vocab[i] for i in ids), tokens=len(ids))

        def generate_stream(
            _: Any,
            prompt: Prompt,
            max_new_tokens: NewTokens = 200,
            temperature: Temperature = 0.8,
            top_k: TopK = None,
            top_p: TopP = None,
            seed: Seed = 0,
        ) -> Generator[str, None, None]:
            """The same as /generate, streamed: each character is sent as soon as it is drawn (the stream ends
            early at the task's timeout)."""
            for i in self.tokens(prompt, max_new_tokens, temperature, top_k, top_p, seed):
                yield self.vocab[i]

        def attention(_: Any, text: Window) -> Attention:
            """Causal self-attention weights of every layer and head for `text` (at most one context window)."""
            return self.attention(text)

        return {
            "generate": service.Api(generate, long=True),
            "generate_stream": service.Api(generate_stream, long=True),
            "attention": service.Api(attention),
        }
