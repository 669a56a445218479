"""Text classifiers that carry a transformer encoder's extra graphs (kind text with embeddings.onnx and
attention.onnx, e.g. the fine-tuned `encoder` task): `POST /classify`, `/embed`, `/attention`, all from ONNX
graphs (model.onnx, embeddings.onnx, attention.onnx) and the bundle's tokenizer.json, so texts become exactly
the ids they became in training (components/data/text/tokenization.py: [CLS] ... [SEP], the first max_length - 2
tokens kept). Run: `dlpipe serve --task encoder` (serving/app.py).
"""

# No `from __future__ import annotations`: BentoML reads the endpoint's annotations, built here at run time.
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from components.data.text.tokenization import encode
from serving import schemas, service
from serving.bundle import Bundle, bundle_tokenizer
from serving.session import make_session

MAX_TEXTS = 64  # per request
MAX_CHARS = 5000  # per text; tokens beyond max_length are cut anyway

Text = Annotated[str, Field(min_length=1, max_length=MAX_CHARS, examples=["a gripping, beautifully acted film"])]
Texts = Annotated[list[Text], Field(min_length=1, max_length=MAX_TEXTS)]


class Embedding(BaseModel):
    vector: list[float]
    tokens: int = Field(description="tokens the vector summarises, [CLS] and [SEP] included")


class Attention(BaseModel):
    tokens: list[str]
    weights: list[list[list[list[float]]]] = Field(description="[layer][head][query][key], each row sums to 1")


class EncoderTask(service.Task):
    family = "encoder"

    def __init__(self, bundle: Bundle) -> None:
        super().__init__(bundle)
        self.tokenizer = bundle_tokenizer(bundle)
        self.max_length = self.meta.tokenizer["max_length"]

    def details(self) -> dict[str, Any]:
        tokenizer = {k: v for k, v in self.meta.tokenizer.items() if k not in ("per_split", "train_tokens_per_text")}
        limits = {"texts_per_request": MAX_TEXTS, "chars_per_text": MAX_CHARS, "tokens_per_text": self.max_length}
        return {"classes": self.meta.classes, "tokenizer": tokenizer, "limits": limits}

    def load(self) -> None:
        self.classifier = make_session(self.bundle, self.threads)
        self.embedder = make_session(self.bundle, self.threads, output="embeddings")
        self.attention_maps = make_session(self.bundle, self.threads, output="attention")

    def warm_up(self) -> None:
        ids, _ = self.ids_of(["a warm-up sentence"])
        for session in (self.classifier, self.embedder, self.attention_maps):
            session.run(None, {self.meta.input.name: ids})

    def ids_of(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (N, L) padded to the longest text of the request, and the real lengths (N,)."""
        enc = encode(self.tokenizer, texts, self.max_length, pad="longest")
        return enc.ids, enc.lengths

    def apis(self) -> dict[str, service.Api]:
        input_name = self.meta.input.name

        def classify(_: Any, texts: Texts) -> list[schemas.ClassPrediction]:
            """Sentiment of each text: the label, its probability, and every class's probability."""
            ids, _ = self.ids_of(texts)
            return schemas.decode(self.classifier.run(None, {input_name: ids})[0], self.meta)

        def embed(_: Any, texts: Texts, pooling: Literal["cls", "mean"] = "cls") -> list[Embedding]:
            """One vector per text: the encoder's [CLS] state, or the mean of its real tokens' states."""
            ids, lengths = self.ids_of(texts)
            vectors = self.embedder.run(None, {input_name: ids})[0][:, 0 if pooling == "cls" else 1]  # (N, C)
            return [Embedding(vector=v.tolist(), tokens=int(n)) for v, n in zip(vectors, lengths, strict=True)]

        def attention(_: Any, text: Text) -> Attention:
            """Self-attention weights of every layer and head for one text, over its tokens."""
            ids, _ = self.ids_of([text])
            weights = self.attention_maps.run(None, {input_name: ids})[0][0]  # (L, H, T, T)
            tokens = [self.tokenizer.id_to_token(int(i)) for i in ids[0]]
            return Attention(tokens=tokens, weights=np.round(weights, 5).tolist())

        return {"classify": service.Api(classify), "embed": service.Api(embed), "attention": service.Api(attention)}
