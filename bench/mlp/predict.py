"""The batching benchmark's model: a numpy MLP 256 -> 2048 -> 2048 -> 10, float32 (about 19 MB of weights).

One call reads every weight whatever the batch size, so a call on many samples costs far less per sample than
many calls on one: the case batching is for. Weights are random but fixed (seed 0); BLAS runs one thread (the
bench sets OPENBLAS_NUM_THREADS=1 and friends before numpy loads).
"""

import numpy as np

_rng = np.random.default_rng(0)
SIZES = (256, 2048, 2048, 10)
WEIGHTS = [(_rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32) for a, b in zip(SIZES, SIZES[1:])]
BIASES = [np.zeros(b, dtype=np.float32) for b in SIZES[1:]]


def forward(x: np.ndarray) -> np.ndarray:
    """(n, 256) -> (n, 10) logits."""
    for i, (w, b) in enumerate(zip(WEIGHTS, BIASES)):
        x = x @ w + b
        if i < len(WEIGHTS) - 1:
            np.maximum(x, 0, out=x)
    return x


def answers(logits: np.ndarray) -> list[dict]:
    labels = logits.argmax(axis=1)
    return [{"label": int(label), "score": round(float(row[label]), 4)} for label, row in zip(labels, logits)]


def predict(x):
    """One request: x is 256 floats."""
    return answers(forward(np.asarray([x], dtype=np.float32)))[0]


def predict_batch(x):
    """A batched route: x is a list of requests' 256 floats; one answer per request, in order."""
    return answers(forward(np.asarray(x, dtype=np.float32)))
