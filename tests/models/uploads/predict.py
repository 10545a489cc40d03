"""Describes the files it was given (size, sha256, name, content type, whether it is a temp file) and its other
params, so tests see what reached the function; `remember` keeps the paths so a test can check they are gone."""

import hashlib
import pathlib

SEEN = []


def describe(image, threshold=0.5, tags=None, flag=False, count=1, meta=None, note=None):
    SEEN.append(image)
    data = image.read_bytes()
    return {
        "is_path": isinstance(image, pathlib.Path),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "name": image.name,
        "suffix": image.suffix,
        "content_type": getattr(image, "content_type", None),
        "path": str(image),
        "other": {"threshold": threshold, "tags": tags, "flag": flag, "count": count, "meta": meta, "note": note},
        "types": [type(v).__name__ for v in (threshold, flag, count)],
    }


def two(first, second=None):
    return {"first": first.read_text(), "second": second.read_text() if second is not None else None}


def batch(image):
    return [p.stat().st_size for p in image]
