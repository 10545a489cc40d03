"""Where endpoints run: base.py (the interface), local.py (this machine), ray.py (Ray Serve over HTTP).

    probes.py       what both use to watch an endpoint: a minimal HTTP GET, the first of several events
    rayapps.py      a job as a Serve application, as data: package, config, status
    rayendpoint.py  one job's application driven: deploy or adopt, watch until it runs or fails, remove
    rayhead.py      the head's HTTP API               raycluster.py   the cluster's nodes, GPUs and totals
    rayexposure.py  what listens where on the nodes   raykeys.py      a keyed job's key package
    raylogs.py      replica output in job logs        raymetrics.py   replica totals, summed
    rayreplicas.py  replica deaths, counted and named raycaptures.py  captured calls drained from the nodes
    rayrollout.py   a job's application rolled over to a new revision (Serve's rolling update)
    rayfallback.py  the shared application at /e: our 503 or 404 at a job URL no application serves
    rayremovals.py  removals of applications that never served, going on after their jobs failed
    switch.py       a local endpoint switched to a new revision on the same socket
    ports.py        a local endpoint's listening socket, on the job's old port while it is free
    scaling.py      local autoscaling: its checks, the runtime options it launches with, its scale file read back
    gpulease.py     a job scaled to zero gives its GPUs back to the pool; a call that wakes it waits for them
    revisionoutput.py  each revision's output files, read into the log with the revision that printed them
"""
