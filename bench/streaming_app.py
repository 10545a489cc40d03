"""The FastAPI baseline for bench/streaming.py: `StreamingResponse` over the same generator, as SSE, with a sync
handler and a sync generator as users write them. Run: uvicorn bench.streaming_app:app (from the repo root)."""

import json
import sys
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).parent / "streams"))
from predict import tokens  # noqa: E402

app = FastAPI()


class Ask(BaseModel):
    n: int = 1000


@app.post("/tokens")
def tokens_route(ask: Ask):
    events = (f"data: {json.dumps(token)}\n\n" for token in tokens(ask.n))
    return StreamingResponse(events, media_type="text/event-stream")


@app.get("/ping")
def ping():
    return {"status": "ready"}
