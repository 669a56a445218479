"""Image tasks (kind image: digits, mnist, fashion): a PNG/JPEG upload (`POST /predict_image`) or JSON pixel arrays
(`POST /predict`) in, top-k classes out.

JSON images are checked and preprocessed one by one (serving/schemas.py `ImageItem`: exactly meta.json's
preprocessing) and then join an adaptive batch in the HTTP worker's own ONNX Runtime session, as tabular rows
do. Uploads are decoded and checked in the HTTP worker and batched by the task's model service
(`dlpipe_<task>_model`, BentoML's composition of two services): a bad upload or image gets a 4xx and never
reaches a batch. Run: `dlpipe serve --task fashion` (serving/app.py).

Size rule: an image of another size is resized to meta.json's `resize` (bilinear, aspect ratio not kept);
colour is converted to grayscale for 1-channel models; a grayscale image sent to an RGB model, an
unsupported mode, or a JSON array with another channel count is refused (400).
"""

# No `from __future__ import annotations`: BentoML reads the endpoint's annotations, built here at run time.
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import numpy as np
from bentoml.exceptions import BentoMLException
from pydantic import Field

from components.data.images import ImageError
from serving import schemas, service, telemetry
from serving.bundle import Bundle
from serving.session import make_session


def _refuse(err: ImageError) -> BentoMLException:
    """The 4xx answer for an image that cannot be used; the message names the problem."""
    return BentoMLException(str(err), error_code=HTTPStatus(err.status))


class ImageTask(service.Task):
    family = "image"

    def __init__(self, bundle: Bundle) -> None:
        super().__init__(bundle)
        self.model_attr = f"{self.name}_model"
        self.item = schemas.image_item_model(self.meta)

    def details(self) -> dict[str, Any]:
        meta = self.meta  # the input spec as the JSON object meta.json holds (a TensorSpec is no JSON value)
        shown = {"classes": meta.classes, "input": meta.input.model_dump(), "preprocessing": meta.preprocessing}
        return shown | {"max_images": schemas.MAX_IMAGES}

    def load(self) -> None:
        self.session = make_session(self.bundle, self.threads)

    def warm_up(self) -> None:
        self.infer(np.zeros([1, *(self.meta.input.shape[1:])], np.float32))

    def infer(self, pixels: np.ndarray) -> np.ndarray:
        names = self.meta.output.name, self.meta.input.name
        return self.session.run([names[0]], {names[1]: pixels.astype(np.float32)})[0]

    def dependencies(self) -> dict[str, Any]:
        def infer(_: Any, pixels: np.ndarray) -> np.ndarray:
            telemetry.observe_batch(self.name, "infer", len(pixels))
            return self.infer(pixels)

        return {self.model_attr: service.model_service(self, infer, self.start)}

    def apis(self) -> dict[str, service.Api]:
        meta, model_attr = self.meta, self.model_attr
        TopK = Annotated[int, Field(ge=1, le=len(meta.classes), description="how many classes to return")]
        Images = Annotated[list[self.item], Field(min_length=1, max_length=schemas.MAX_IMAGES)]

        async def predict_image(svc: Any, file: Path, top_k: TopK = 3) -> list[schemas.TopClass]:
            """Classify one uploaded PNG/JPEG (`curl -F file=@shirt.png`): top-k classes, most probable first."""
            try:
                x = schemas.image_from_upload(file.read_bytes(), meta)
            except ImageError as err:
                raise _refuse(err) from None
            model = getattr(svc, model_attr).to_async
            try:
                output = await model.infer(x)
            except aiohttp.ClientConnectionError:  # a pooled keep-alive connection the model service just closed
                output = await model.infer(x)  # inference is idempotent: once more, on a fresh connection
            return schemas.top_k(output, meta, top_k)[0]

        def predict(_: Any, images: Images) -> list[list[schemas.TopClass]]:
            """Classify images sent as pixel values 0..255 (`{"images": [{"pixels": [[...], ...], "top_k": 3}]}`):
            top-k classes per image, most probable first."""
            telemetry.observe_batch(self.name, "predict", len(images))
            output = self.infer(np.concatenate([image.x for image in images]))
            return [schemas.top_k(row[None], meta, image.top_k)[0] for row, image in zip(output, images, strict=True)]

        return {
            "predict_image": service.Api(predict_image, body="multipart/form-data"),
            "predict": service.Api(predict, batchable=True),
        }
