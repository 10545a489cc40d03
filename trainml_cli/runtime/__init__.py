"""The endpoint runtime: an ASGI app on uvicorn that serves a user's functions from route specs.

Launched as `python -m trainml_cli.runtime` (see config.py); imports only the shared leaves, its server
libraries and the user's code.

    __main__.py  the command line's entry    config.py    its settings, from ../launchspec.py's command line
    server.py    uvicorn, worker processes   app.py       the ASGI app: routes, /ping, /metrics, /docs
    loader.py    the user's functions        binding.py   strict requests to arguments, bounded 422s
    gate.py      calls at once, the queue, timeouts (the gate every call passes)
    inline.py    short sync calls run on the event loop, once proved short
    batching.py  batched routes              metrics.py   Prometheus, summed over workers
    auth.py      endpoint keys               output.py    results to JSON, the access log
    docs.py      /openapi.json and /docs     serve_entry.py  the Ray Serve deployment (the only module importing ray)
    replies.py   request ids, JSON answers   streaming.py generator routes as SSE or NDJSON
    ownpaths.py  /ping and the health it reports, /metrics, /docs, OPTIONS, 404 and 405
    body.py      a body's headers and bytes  uploads.py   file params: multipart to disk, base64 in JSON
    autoscaler.py  an autoscaled group's leader: workers between min and max, down to zero
    waker.py     while no worker is ready: /ping, /metrics, calls held then passed on
    capture.py   sampled calls kept (--capture), written off the hot path
    segments.py  where they are written: JSONL segments, the oldest removed past --capture-size
    tracing.py   OTLP spans of each call, sent as JSON by a thread (standard library only)
    stamps.py    each printed line's time, so stdout and stderr are logged in print order
    fallback.py  on Ray, a job's URL that no application serves (starting, stopping, removed): 503 or 404
"""
