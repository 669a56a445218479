"""Text classification tasks (kind text, without an encoder's extra graphs): `POST /classify`, texts in, label
and probability out.

The tokenizer is the prepare step's tokenizer.json, shipped inside the registered model beside meta.json.
Each request's texts are validated on their own (serving/schemas.py: not empty, within max_chars) before
they join an adaptive batch; a batch is padded only to its longest text (the model's sequence axis is
dynamic). Run: `dlpipe serve --task sentiment` (serving/app.py).
"""

# No `from __future__ import annotations`: BentoML reads the endpoint's annotations, built here at run time.
from typing import Annotated, Any

from pydantic import Field

from components.data.text.tokenization import encode
from serving import schemas, service, telemetry
from serving.bundle import Bundle, bundle_tokenizer
from serving.session import make_session


class TextTask(service.Task):
    family = "text"

    def __init__(self, bundle: Bundle) -> None:
        super().__init__(bundle)
        self.tokenizer = bundle_tokenizer(bundle)

    def details(self) -> dict[str, Any]:
        tok = self.meta.tokenizer
        limits = {k: tok[k] for k in ("max_length", "max_chars", "truncation")}
        return {"classes": self.meta.classes, **limits, "max_texts": schemas.MAX_ITEMS}

    def load(self) -> None:
        self.session = make_session(self.bundle, self.threads)

    def warm_up(self) -> None:
        self.classify(["a warm-up sentence"])

    def classify(self, texts: list[str]) -> list[schemas.Classification]:
        enc = encode(self.tokenizer, texts, self.meta.tokenizer["max_length"], pad="longest")
        out = self.session.run([self.meta.output.name], {self.meta.input.name: enc.ids})[0]
        return schemas.classify_output(out, enc.lengths, enc.truncated, self.meta)

    def apis(self) -> dict[str, service.Api]:
        Texts = Annotated[list[schemas.text_type(self.meta)], Field(min_length=1, max_length=schemas.MAX_ITEMS)]

        def classify(_: Any, texts: Texts) -> list[schemas.Classification]:
            """Label each text (`{"texts": ["...", ...]}`): the most probable class and every class's probability."""
            telemetry.observe_batch(self.name, "classify", len(texts))
            return self.classify(texts)

        return {"classify": service.Api(classify, batchable=True)}
