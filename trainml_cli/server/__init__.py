"""The control plane: jobs, model sources, supervised endpoints and their logs, behind a REST API.

    __main__.py   `python -m trainml_cli.server`        daemon.py     lock, token, address file, uvicorn
    app.py        the FastAPI app and its error JSON     api.py        the routes (documented there)
    auth.py       the one auth dependency                schemas.py    request/response shapes (OpenAPI)
    jobs.py       job records and user actions           payload.py    the job payload, checked
    driver.py     a job's task: fetch, build, launch     jobrecord.py  a job's row, decoded (JobRecord)
    states.py     statuses and legal moves               backends/     base (the seam), local, ray
    sources.py    uploads, git, stored-model copies      models.py     stored models
    resources.py  GPUs, the price table                  logs.py       job logs: batches, pages, followers
    store.py      SQLite, all the SQL                    processes.py  process groups, adopting endpoints
    tailing.py    endpoint output files, followed        redaction.py  credentials in URIs kept out of output
    vault.py      named secrets (0600), for endpoints'   gitcredentials.py  a job's git credentials, for git
                  environments only                      endpointkeys.py    endpoint keys: made, kept, rotated
    archives.py   uploads checked and unpacked           zipped.py     a .zip upload turned into a tar.gz
    bodies.py     the API's JSON bodies, bounded         openapi.py    every error status in /openapi.json
    environments.py  endpoint environments (uv)          interpreters.py  the Python an environment runs
    pipconfig.py  pip's settings, for uv                 prometheus.py the control plane's /metrics
    private.py    the home's files 0600, folders 0700    dashboard/    the web dashboard
    revisions.py  a job's revisions: update, switch, roll back
    takeover.py   what a revision takes over: GPUs, the endpoint key
    migrations.py the SQLite schema, step by step
    captures.py   a job's captured calls, read and replayed; requestsapi.py  their routes
    tracing.py    OpenTelemetry spans: API calls, a job's start-up steps (the otel extra, when configured)
    (options: ../serveroptions.py, one table)

It starts the endpoint runtime as a child process (`python -m trainml_cli.runtime ...`), or as a Ray Serve
application over Ray's HTTP API, and never imports it (nor ray).
"""
