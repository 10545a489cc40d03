"""The uploaded file's size and sha256, read from disk in 1 MiB chunks (bench/upload.py)."""

import hashlib


def digest_file(file) -> dict:
    sha, size = hashlib.sha256(), 0
    while True:
        chunk = file.read(1 << 20)
        if not chunk:
            return {"size": size, "sha256": sha.hexdigest()}
        sha.update(chunk)
        size += len(chunk)


def digest(image, count=1):
    with open(image, "rb") as file:
        return {**digest_file(file), "count": count}
