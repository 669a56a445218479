"""BentoML service for the causal language model (task `decoder`): text generation and attention maps.

ONNX Runtime only: model.onnx maps ids (1, T) to logits (1, T, V) for any T up to the context length; each new
token reruns the window (the graph has no KV cache; the PyTorch model's cache gives the same tokens, see
tests/test_transformer.py). Sampling is components/generation.py's, seeded per request, so a fixed seed gives
the same text. attention.onnx returns every layer's and head's weights. The characters the model knows are
meta.json's vocabulary: a prompt with others is refused (400) naming them.
Run: `bentoml serve serving.decoder:Decoder` (or `dlpipe serve --task decoder`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from components.generation import Sampling, generate_onnx
from serving import runtime

MAX_PROMPT_CHARS = 2000
MAX_NEW_TOKENS = 1000

BUNDLE = runtime.bundle_from_env(default_task="decoder")
META = BUNDLE.meta
VOCAB: list[str] = META["vocab"]
INDEX = {c: i for i, c in enumerate(VOCAB)}
WINDOW = META["model_inputs"]["max_len"]
MAX_ATTENTION_CHARS = WINDOW  # one window: the weights of a longer text would be of several forward passes
INFO = {
    "task": META["task"],
    "source": BUNDLE.source,
    "vocabulary": "".join(VOCAB),
    "context_length": WINDOW,
    "limits": {
        "prompt_chars": MAX_PROMPT_CHARS,
        "max_new_tokens": MAX_NEW_TOKENS,
        "attention_chars": MAX_ATTENTION_CHARS,
    },
}

Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="text to continue")]
NewTokens = Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS, description="characters to generate")]
Temperature = Annotated[float, Field(ge=0, le=5, description="0 = greedy")]
TopK = Annotated[int | None, Field(ge=1, le=len(VOCAB), description="keep the k likeliest tokens")]
TopP = Annotated[float | None, Field(gt=0, le=1, description="keep the smallest set reaching this probability")]


class Generated(BaseModel):
    text: str = Field(description="the generated continuation (the prompt not included)")
    tokens: int


class Attention(BaseModel):
    tokens: list[str]
    weights: list[list[list[list[float]]]] = Field(description="[layer][head][query][key], each row sums to 1")


def encode(text: str) -> list[int]:
    unknown = sorted({c for c in text if c not in INDEX})
    if unknown:
        raise InvalidArgument(f"characters outside the model's vocabulary: {''.join(unknown)!r}")
    return [INDEX[c] for c in text]


async def info(_: Request) -> JSONResponse:
    return JSONResponse(INFO)


@bentoml.asgi_app(runtime.mount_playground(Starlette(routes=[Route("/info", info, methods=["GET"])])), path="/")
@bentoml.service(name=f"dlpipe_{META['task']}", workers=1, traffic={"timeout": 120})
class Decoder:
    def __init__(self) -> None:
        self.session = runtime.make_session(BUNDLE)
        self.attention_session = runtime.make_session(BUNDLE, output="attention")

    def _tokens(self, prompt: str, max_new_tokens: int, temperature: float, top_k, top_p, seed: int):
        how = Sampling(temperature=temperature, top_k=top_k, top_p=top_p)
        step = lambda ids: self.session.run(None, {"ids": ids})[0]  # noqa: E731
        return generate_onnx(step, encode(prompt), max_new_tokens, how, seed, WINDOW)

    @bentoml.api
    def generate(
        self,
        prompt: Prompt,
        max_new_tokens: NewTokens = 200,
        temperature: Temperature = 0.8,
        top_k: TopK = None,
        top_p: TopP = None,
        seed: int = 0,
    ) -> Generated:
        """Continue `prompt`; the same seed and settings always give the same text."""
        ids = list(self._tokens(prompt, max_new_tokens, temperature, top_k, top_p, seed))
        return Generated(text="".join(VOCAB[i] for i in ids), tokens=len(ids))

    @bentoml.api
    async def generate_stream(
        self,
        prompt: Prompt,
        max_new_tokens: NewTokens = 200,
        temperature: Temperature = 0.8,
        top_k: TopK = None,
        top_p: TopP = None,
        seed: int = 0,
    ) -> AsyncGenerator[str, None]:
        """The same as /generate, streamed: each character is sent as soon as it is drawn."""
        for i in self._tokens(prompt, max_new_tokens, temperature, top_k, top_p, seed):
            yield VOCAB[i]

    @bentoml.api
    def attention(self, text: Annotated[str, Field(min_length=1, max_length=MAX_ATTENTION_CHARS)]) -> Attention:
        """Causal self-attention weights of every layer and head for `text` (at most one context window)."""
        ids = np.asarray([encode(text)], dtype=np.int64)
        weights = self.attention_session.run(None, {"ids": ids})[0][0]  # (L, H, T, T)
        return Attention(tokens=list(text), weights=np.round(weights, 5).tolist())


Decoder.add_asgi_middleware(runtime.JSONOnly)
