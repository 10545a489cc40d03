"""The baseline for bench/upload.py: FastAPI with `UploadFile` and a form field, a sync handler as users write it.
Run: uvicorn bench.upload_app:app (from the repo root; needs python-multipart, the bench extra)."""

import sys
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, UploadFile

sys.path.insert(0, str(Path(__file__).parent / "uploads"))
from predict import digest_file  # noqa: E402

app = FastAPI()


@app.post("/digest")
def digest_route(image: Annotated[UploadFile, File()], count: Annotated[int, Form()] = 1):
    return {**digest_file(image.file), "count": count}


@app.get("/ping")
def ping():
    return {"status": "ready"}
