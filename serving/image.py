"""Image tasks (digits, mnist, fashion): a PNG/JPEG upload (`POST /predict_image`) or a JSON pixel array
(`POST /predict`) in, top-k classes out.

Two services in one `bentoml serve`: the HTTP one decodes and validates each request on its own, applying
exactly meta.json's preprocessing (serving/runtime.py), so a bad upload gets a 4xx and never reaches a batch;
the task's model service (`dlpipe_<task>_model`) runs ONNX Runtime with adaptive batching over all requests'
images. Run: `bentoml serve serving.image:Image` (DLPIPE_TASK, default "digits"; or `dlpipe serve --task fashion`).

Size rule: an image of another size is resized to meta.json's `resize` (bilinear, aspect ratio not kept);
colour is converted to grayscale for 1-channel models; a grayscale image sent to an RGB model, an
unsupported mode, or a JSON array with another channel count is refused (400).
"""

# No `from __future__ import annotations`: BentoML reads the endpoint's annotations, built here at run time.
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from bentoml.exceptions import BentoMLException
from pydantic import Field

from components.images import ImageError
from serving import guard, runtime, service


def _refuse(err: ImageError) -> BentoMLException:
    """The 4xx answer for an image that cannot be used; the message names the problem."""
    return BentoMLException(str(err), error_code=HTTPStatus(err.status))


class ImageTask(service.Task):
    family = "image"

    def __init__(self, bundle: runtime.Bundle) -> None:
        super().__init__(bundle)
        self.model_attr = f"{self.name}_model"

    def details(self) -> dict[str, Any]:
        keys = ("classes", "input", "preprocessing")
        return {k: self.meta[k] for k in keys} | {"max_images": runtime.MAX_IMAGES}

    def load_model(self) -> None:
        """In the model service's process only: the session, and one warm-up call."""
        self.session = runtime.make_session(self.bundle)
        shape = [1, *(self.meta["input"]["shape"][1:])]
        self.infer(np.zeros(shape, np.float32))

    def infer(self, pixels: np.ndarray) -> np.ndarray:
        names = self.meta["output"]["name"], self.meta["input"]["name"]
        return self.session.run([names[0]], {names[1]: pixels.astype(np.float32)})[0]

    def dependencies(self) -> dict[str, Any]:
        def infer(_: Any, pixels: np.ndarray) -> np.ndarray:
            guard.observe_batch(self.name, "infer", len(pixels))
            return self.infer(pixels)

        return {self.model_attr: service.model_service(self, infer, self.load_model)}

    def apis(self) -> dict[str, service.Api]:
        meta, model_attr = self.meta, self.model_attr
        TopK = Annotated[int, Field(ge=1, le=len(meta["classes"]), description="how many classes to return")]

        async def predict_image(svc: Any, file: Path, top_k: TopK = 3) -> list[runtime.TopClass]:
            """Classify one uploaded PNG/JPEG (`curl -F file=@shirt.png`): top-k classes, most probable first."""
            try:
                x = runtime.image_from_upload(file.read_bytes(), meta)
            except ImageError as err:
                raise _refuse(err) from None
            return runtime.top_k(await getattr(svc, model_attr).to_async.infer(x), meta, top_k)[0]

        async def predict(svc: Any, pixels: list, top_k: TopK = 3) -> list[list[runtime.TopClass]]:
            """Classify pixel values 0..255 shaped [H, W], [C, H, W] or [N, C, H, W]: top-k per image."""
            try:
                x = runtime.image_from_array(pixels, meta)
            except (ImageError, ValueError, TypeError) as err:
                raise _refuse(err if isinstance(err, ImageError) else ImageError(f"pixels: {err}")) from None
            return runtime.top_k(await getattr(svc, model_attr).to_async.infer(x), meta, top_k)

        return {
            "predict_image": service.Api(predict_image, body="multipart/form-data"),
            "predict": service.Api(predict),
        }


def __getattr__(name: str) -> Any:
    """`Image`, built on first access from the environment's task (so the gateway can import this module)."""
    if name == "Image":
        return service.single(ImageTask, "digits")
    raise AttributeError(name)
