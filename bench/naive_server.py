"""The baseline bench/serving_load.py measures BentoML against: the same model as a naive FastAPI app in one
uvicorn worker, eager PyTorch, one forward pass per request (no batching), the same JSON in and out as the real
service's POST /predict (tabular records, or image pixels with top_k) and the same validation (serving/runtime.py).

The model is rebuilt with the repo's model code from checkpoint.pt (loaded with weights_only=True), not ONNX.

    python bench/naive_server.py artifacts/digits --port 3500
"""

import argparse  # no `from __future__ import annotations`: FastAPI must see the local body models
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from components.images import ImageError
from components.objectives import OutputHead
from components.train import load_trained
from serving import runtime


def build_app(model_dir: Path) -> FastAPI:
    model, meta = load_trained(model_dir)
    head = OutputHead(model, meta).eval()
    app = FastAPI(title=f"naive {meta['task']}")

    def forward(x: Any) -> Any:
        with torch.inference_mode():
            return head(torch.from_numpy(x)).numpy()

    if "feature_names" in meta:
        Record = runtime.record_model(meta)

        class Records(BaseModel):
            records: list[Record] = Field(min_length=1, max_length=1000)  # type: ignore[valid-type]

        @app.post("/predict")
        def predict(body: Records) -> list[dict[str, Any]]:
            return [p.model_dump() for p in runtime.decode(forward(Record.matrix(body.records)), meta)]

    else:

        class Pixels(BaseModel):
            pixels: list
            top_k: int = Field(3, ge=1, le=len(meta["classes"]))

        @app.post("/predict")
        def predict(body: Pixels) -> list[list[dict[str, Any]]]:
            try:
                x = runtime.image_from_array(body.pixels, meta)
            except (ImageError, ValueError) as err:
                raise HTTPException(400, str(err)) from None
            return [[c.model_dump() for c in row] for row in runtime.top_k(forward(x), meta, body.top_k)]

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
