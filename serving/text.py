"""BentoML service for text classification tasks: `POST /classify` (texts in, label and probability out).

The bundle comes from DLPIPE_TASK (default "sentiment") and DLPIPE_MODEL_URI / DLPIPE_MODEL_DIR; the
tokenizer is the prepare step's tokenizer.json, shipped inside the registered model beside meta.json.
Each request's texts are validated on their own (serving/sequence.py: not empty, within max_chars) before
they join an adaptive batch; a batch is padded only to its longest text (the model's sequence axis is
dynamic). Run: `bentoml serve serving.text:TextClassifier` (or `dlpipe serve --task sentiment`).
"""

from __future__ import annotations

from typing import Annotated

import bentoml
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from components.tokenization import encode
from serving import runtime, sequence

BUNDLE = runtime.bundle_from_env(default_task="sentiment")
META = BUNDLE.meta
TOKENIZER = runtime.bundle_tokenizer(BUNDLE)
Text = sequence.text_type(META)
Texts = Annotated[list[Text], Field(min_length=1, max_length=sequence.MAX_ITEMS)]
INFO = {
    "task": META["task"],
    "source": BUNDLE.source,
    "classes": META["classes"],
    "max_length": META["tokenizer"]["max_length"],
    "max_chars": META["tokenizer"]["max_chars"],
    "truncation": META["tokenizer"]["truncation"],
    "max_texts": sequence.MAX_ITEMS,
}


async def info(_: Request) -> JSONResponse:
    return JSONResponse(INFO)


@bentoml.asgi_app(runtime.mount_playground(Starlette(routes=[Route("/info", info, methods=["GET"])])), path="/")
@bentoml.service(name=f"dlpipe_{META['task']}", workers=1, traffic={"timeout": 30})
class TextClassifier:
    def __init__(self) -> None:
        self.session = runtime.make_session(BUNDLE)
        self.input_name, self.output_name = META["input"]["name"], META["output"]["name"]

    @bentoml.api(batchable=True, max_batch_size=sequence.MAX_ITEMS, max_latency_ms=1000)
    def classify(self, texts: Texts) -> list[sequence.Classification]:
        """Label each text (`{"texts": ["...", ...]}`): the most probable class and every class's probability."""
        enc = encode(TOKENIZER, texts, META["tokenizer"]["max_length"], pad="longest")
        out = self.session.run([self.output_name], {self.input_name: enc.ids})[0]
        return sequence.classify_output(out, enc.lengths, enc.truncated, META)


TextClassifier.add_asgi_middleware(sequence.Utf8Json)
