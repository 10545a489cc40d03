"""The `trainml` command line: a thin layer over the SDK (and, for `endpoint serve`, the runtime).

    main.py    the root group, lazy subcommands, the one error renderer
    params.py  option types (--route, ...)       output.py   tables, JSON, the rich console
    job.py     trainml job ...                   model.py    trainml model ...
    server.py  trainml server ...                dashboard.py  trainml server dashboard
    endpoint.py  trainml endpoint serve          environment.py  trainml environment ...
    gpu.py     trainml gpu ...                   secret.py   trainml secret ...
    scaling.py the replica options of job create (from ../replicaspec.py)
    revision.py  trainml job update, revisions, rollback   call.py  trainml job call
    connect.py   trainml job connect, rotate-key
    requests.py  trainml job requests, replay (captured calls)
    joblog.py  trainml job logs, attach          (main.py also holds `trainml configure`, trainML's)
    jobview.py  how a job shows: its fields, its endpoint and curl lines, its progress and log
    manpages.py  completions/ and man/, generated from the click app; docspages.py  docs/cli/, the same way
"""
