"""The batching benchmark's FastAPI baseline: a hand-written app with a sync handler, one request per call, serving
bench/mlp/predict.py. Run: uvicorn bench.mlp_apps:app --port P (from the repo root)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "mlp"))
from fastapi import FastAPI  # noqa: E402
from predict import predict  # noqa: E402
from pydantic import BaseModel  # noqa: E402

app = FastAPI()


class Body(BaseModel):
    x: list[float]


@app.post("/predict")
def predict_route(body: Body):
    return predict(body.x)


@app.get("/ping")
def ping():
    return {"status": "ready"}
