"""A small sentiment model: plain Python, no imports from trainml_cli, no decorators.

The word weights load once when the endpoint starts (module level), as real model weights would.
"""

import json
import os
import re
from pathlib import Path

WEIGHTS = json.loads((Path(__file__).parent / "weights.json").read_text())
WORD = re.compile(r"[a-z']+")
# How far from 0 a score must be to count as positive or negative, unless a call says: set per job with
# `--env THRESHOLD=0.2`.
THRESHOLD = float(os.environ.get("THRESHOLD", "0.1"))


def predict(text, threshold=None):
    threshold = THRESHOLD if threshold is None else threshold
    words = WORD.findall(text.lower())
    score = sum(WEIGHTS.get(word, 0.0) for word in words) / max(1, len(words)) ** 0.5
    label = "positive" if score > threshold else "negative" if score < -threshold else "neutral"
    return {"label": label, "score": round(score, 4)}


def predict_batch(texts):
    return [predict(text) for text in texts]
