"""BentoML service for image tasks: a PNG/JPEG upload or a JSON pixel array in, top-k classes out.

Two services in one `bentoml serve`: `Image` (HTTP) decodes and validates each request on its own,
applying exactly meta.json's preprocessing (serving/runtime.py), so a bad upload gets a 4xx and never
reaches a batch; `ImageModel` runs ONNX Runtime with adaptive batching over all requests' images.
The bundle comes from DLPIPE_TASK (default "digits") and DLPIPE_MODEL_URI / DLPIPE_MODEL_DIR.
Run: `bentoml serve serving.image:Image` (or `dlpipe serve --task fashion`).

Size rule: an image of another size is resized to meta.json's `resize` (bilinear, aspect ratio not kept);
colour is converted to grayscale for 1-channel models; a grayscale image sent to an RGB model, an
unsupported mode, or a JSON array with another channel count is refused (400).
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from components.images import ImageError
from serving import runtime

BUNDLE = runtime.bundle_from_env(default_task="digits")
META = BUNDLE.meta
TopK = Annotated[int, Field(ge=1, le=len(META["classes"]), description="how many classes to return")]
INFO = {
    "task": META["task"],
    "source": BUNDLE.source,
    "classes": META["classes"],
    "input": META["input"],
    "preprocessing": META["preprocessing"],
    "max_images": runtime.MAX_IMAGES,
}


def _refuse(err: ImageError) -> BentoMLException:
    """The 4xx answer for an image that cannot be used; the message names the problem."""
    return BentoMLException(str(err), error_code=HTTPStatus(err.status))


async def info(_: Request) -> JSONResponse:
    return JSONResponse(INFO)


@bentoml.service(name=f"dlpipe_{META['task']}_model", workers=1)
class ImageModel:
    """ONNX Runtime on normalised images [N, C, H, W]; requests' images are joined into adaptive batches."""

    def __init__(self) -> None:
        self.session = runtime.make_session(BUNDLE)
        self.input_name, self.output_name = META["input"]["name"], META["output"]["name"]

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=runtime.MAX_IMAGES, max_latency_ms=1000)
    def infer(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: pixels.astype(np.float32)})[0]


@bentoml.asgi_app(runtime.mount_playground(Starlette(routes=[Route("/info", info, methods=["GET"])])), path="/")
@bentoml.service(name=f"dlpipe_{META['task']}", workers=1, traffic={"timeout": 30})
class Image:
    model = bentoml.depends(ImageModel)

    @bentoml.api
    async def predict_image(self, file: Path, top_k: TopK = 3) -> list[runtime.TopClass]:
        """Classify one uploaded PNG/JPEG (`curl -F file=@shirt.png`): top-k classes, most probable first."""
        try:
            x = runtime.image_from_upload(file.read_bytes(), META)
        except ImageError as err:
            raise _refuse(err) from None
        return runtime.top_k(await self.model.to_async.infer(x), META, top_k)[0]

    @bentoml.api
    async def predict(self, pixels: list, top_k: TopK = 3) -> list[list[runtime.TopClass]]:
        """Classify pixel values 0..255 shaped [H, W], [C, H, W] or [N, C, H, W]: top-k per image."""
        try:
            x = runtime.image_from_array(pixels, META)
        except (ImageError, ValueError, TypeError) as err:
            raise _refuse(err if isinstance(err, ImageError) else ImageError(f"pixels: {err}")) from None
        return runtime.top_k(await self.model.to_async.infer(x), META, top_k)


Image.add_asgi_middleware(runtime.FormGuard)
