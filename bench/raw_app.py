"""The ceiling: a raw ASGI app on the same uvicorn and uvloop, no framework, no thread hop, no log, calling the same
function inline on the event loop. Run: uvicorn bench.raw_app:app (from the repo root)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "model"))
from predict import predict  # noqa: E402

_HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send):
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/ping":
        body = b'{"status":"ready"}'
    else:
        message = await receive()
        data = message.get("body", b"")
        while message.get("more_body"):
            message = await receive()
            data += message.get("body", b"")
        values = json.loads(data)
        body = json.dumps(predict(values["text"], values["n"])).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
