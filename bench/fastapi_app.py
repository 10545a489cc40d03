"""The baseline: a hand-written FastAPI + pydantic app calling the same function, with a sync handler as users
write it. Run: uvicorn bench.fastapi_app:app (from the repo root)."""

import sys
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).parent / "model"))
from predict import predict, slow  # noqa: E402

app = FastAPI()


class Body(BaseModel):
    text: str
    n: int


@app.post("/predict")
def predict_route(body: Body):
    return predict(body.text, body.n)


class SlowBody(BaseModel):
    text: str


@app.post("/slow")
def slow_route(body: SlowBody):
    return slow(body.text)


@app.get("/ping")
def ping():
    return {"status": "ready"}
