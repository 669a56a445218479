"""The baseline bench/serving_load.py measures BentoML against: the same model as a naive FastAPI app in one
uvicorn worker, eager PyTorch, one forward pass per request (no batching), the same JSON in and out as the real
service's POST /predict (tabular records, or image pixels with top_k) and the same validation (serving/schemas.py).

The model is rebuilt with the repo's model code from checkpoint.pt (loaded with weights_only=True), not ONNX.

    python bench/naive_server.py artifacts/digits --port 3500
"""

import argparse  # no `from __future__ import annotations`: FastAPI must see the local body models
from pathlib import Path
from typing import Any

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

from components.train.checkpoint import load_trained
from components.train.objectives import OutputHead
from serving import schemas


def build_app(model_dir: Path) -> FastAPI:
    model, meta = load_trained(model_dir)
    head = OutputHead(model, meta).eval()
    app = FastAPI(title=f"naive {meta.task}")

    def forward(x: Any) -> Any:
        with torch.inference_mode():
            return head(torch.from_numpy(x)).numpy()

    if meta.kind == "tabular":
        Record = schemas.record_model(meta)

        class Records(BaseModel):
            records: list[Record] = Field(min_length=1, max_length=1000)  # type: ignore[valid-type]

        @app.post("/predict")
        def predict(body: Records) -> list[dict[str, Any]]:
            return [p.model_dump() for p in schemas.decode(forward(Record.matrix(body.records)), meta)]

    else:
        Image = schemas.image_item_model(meta)  # the same per-image checks and preprocessing

        class Images(BaseModel):
            images: list[Image] = Field(min_length=1, max_length=schemas.MAX_IMAGES)  # type: ignore[valid-type]

        @app.post("/predict")
        def predict(body: Images) -> list[list[dict[str, Any]]]:
            output = forward(np.concatenate([image.x for image in body.images]))
            return [
                [c.model_dump() for c in schemas.top_k(row[None], meta, image.top_k)[0]]
                for row, image in zip(output, body.images, strict=True)
            ]

    @app.get("/readyz")
    def ready() -> str:
        return "ok"

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="an artifacts/<task> folder with checkpoint.pt and data/")
    parser.add_argument("--port", type=int, default=3500)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model_dir), host="127.0.0.1", port=args.port, workers=1, access_log=False)


if __name__ == "__main__":
    main()
