"""BentoML service for the fine-tuned transformer encoder (task `encoder`): classification, sentence vectors and
attention maps, all from ONNX graphs (model.onnx, embeddings.onnx, attention.onnx) and the bundle's
tokenizer.json, so texts become exactly the ids they became in training (components/tokenization.py: [CLS]
... [SEP], the first max_length - 2 tokens kept).
Run: `bentoml serve serving.encoder:Encoder` (or `dlpipe serve --task encoder`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import bentoml
import numpy as np
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from components.tokenization import encode
from serving import runtime

MAX_TEXTS = 64  # per request
MAX_CHARS = 5000  # per text; tokens beyond max_length are cut anyway

BUNDLE = runtime.bundle_from_env(default_task="encoder")
META = BUNDLE.meta
TOKENIZER = runtime.bundle_tokenizer(BUNDLE)
MAX_LENGTH = META["tokenizer"]["max_length"]
INFO = {
    "task": META["task"],
    "source": BUNDLE.source,
    "classes": META["classes"],
    "tokenizer": {k: v for k, v in META["tokenizer"].items() if k not in ("per_split", "train_tokens_per_text")},
    "limits": {"texts_per_request": MAX_TEXTS, "chars_per_text": MAX_CHARS, "tokens_per_text": MAX_LENGTH},
}
Text = Annotated[str, Field(min_length=1, max_length=MAX_CHARS)]
Texts = Annotated[list[Text], Field(min_length=1, max_length=MAX_TEXTS)]


class Embedding(BaseModel):
    vector: list[float]
    tokens: int = Field(description="tokens the vector summarises, [CLS] and [SEP] included")


class Attention(BaseModel):
    tokens: list[str]
    weights: list[list[list[list[float]]]] = Field(description="[layer][head][query][key], each row sums to 1")


def ids_of(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (N, L) padded to the longest text of the request, and the real lengths (N,)."""
    enc = encode(TOKENIZER, texts, MAX_LENGTH, pad="longest")
    return enc.ids, enc.lengths


async def info(_: Request) -> JSONResponse:
    return JSONResponse(INFO)


@bentoml.asgi_app(runtime.mount_playground(Starlette(routes=[Route("/info", info, methods=["GET"])])), path="/")
@bentoml.service(name=f"dlpipe_{META['task']}", workers=1, traffic={"timeout": 30})
class Encoder:
    def __init__(self) -> None:
        self.input_name = META["input"]["name"]
        self.classifier = runtime.make_session(BUNDLE)
        self.embedder = runtime.make_session(BUNDLE, output="embeddings")
        self.attention_maps = runtime.make_session(BUNDLE, output="attention")

    @bentoml.api
    def classify(self, texts: Texts) -> list[runtime.ClassPrediction]:
        """Sentiment of each text: the label, its probability, and every class's probability."""
        ids, _ = ids_of(texts)
        return runtime.decode(self.classifier.run(None, {self.input_name: ids})[0], META)

    @bentoml.api
    def embed(self, texts: Texts, pooling: Literal["cls", "mean"] = "cls") -> list[Embedding]:
        """One vector per text: the encoder's [CLS] state, or the mean of its real tokens' states."""
        ids, lengths = ids_of(texts)
        vectors = self.embedder.run(None, {self.input_name: ids})[0][:, 0 if pooling == "cls" else 1]  # (N, C)
        return [Embedding(vector=v.tolist(), tokens=int(n)) for v, n in zip(vectors, lengths, strict=True)]

    @bentoml.api
    def attention(self, text: Text) -> Attention:
        """Self-attention weights of every layer and head for one text, over its tokens."""
        ids, _ = ids_of([text])
        weights = self.attention_maps.run(None, {self.input_name: ids})[0][0]  # (L, H, T, T)
        return Attention(tokens=[TOKENIZER.id_to_token(int(i)) for i in ids[0]], weights=np.round(weights, 5).tolist())


Encoder.add_asgi_middleware(runtime.JSONOnly)
