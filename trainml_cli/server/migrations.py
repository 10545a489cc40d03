"""The control plane's SQLite schema, one step per version: a database at version N runs steps N+1 onwards
(store.py), each in one transaction. A change is a new step and a bump of SCHEMA_VERSION, never an edit of a
step a database may already have run.
"""

SCHEMA_VERSION = 7

MIGRATIONS = {
    1: """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        spec TEXT NOT NULL,             -- the accepted payload: type, resources, model, endpoint, environment
        source TEXT NOT NULL DEFAULT '{}',  -- what was fetched: commit, size, upload id
        port INTEGER,                   -- the endpoint's port, kept across restarts so the URL stays stable
        pid INTEGER,                    -- the endpoint's process (leader of its own process group)
        pid_start INTEGER,              -- its start time in clock ticks, to tell it from a reused pid
        gpus TEXT NOT NULL DEFAULT '[]',
        restarts INTEGER NOT NULL DEFAULT 0,
        run_seconds REAL NOT NULL DEFAULT 0,
        credits REAL NOT NULL DEFAULT 0,
        running_since REAL,             -- set while billed; run time = run_seconds + (now - running_since)
        rate REAL NOT NULL DEFAULT 0,   -- credits per hour of the current run (see resources.PRICES)
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX jobs_name ON jobs(name);
    CREATE TABLE models (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        source_type TEXT NOT NULL,
        source_uri TEXT NOT NULL,
        git_ref TEXT,
        git_commit TEXT,
        size INTEGER NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the cursor: grows with every line, never reused
        job_id TEXT NOT NULL,
        time REAL NOT NULL,
        stream TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX logs_job ON logs(job_id, id);
    """,
    2: """
    -- how far the control plane has read the endpoint's output files (tailing.py): {"stdout": n, "stderr": n}
    ALTER TABLE jobs ADD COLUMN log_offsets TEXT NOT NULL DEFAULT '{}';
    -- what must never be shown: {"source_uri": the git URI with its credentials}; spec holds it redacted
    ALTER TABLE jobs ADD COLUMN secrets TEXT NOT NULL DEFAULT '{}';
    -- platform events are pruned apart from the output (logs.py)
    CREATE INDEX logs_job_stream ON logs(job_id, stream, id);
    """,
    3: """
    -- each status change as data (the dashboard's status history); before this, only `status: X` log lines
    CREATE TABLE job_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        time REAL NOT NULL,
        status TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX job_events_job ON job_events(job_id, id);
    -- carry over the history of jobs made before: `status: X` or `status: X (detail)`, and the creation line
    INSERT INTO job_events (job_id, time, status, detail)
    SELECT job_id, time,
           CASE WHEN instr(rest, ' (') > 0 AND rest LIKE '%)' THEN substr(rest, 1, instr(rest, ' (') - 1) ELSE rest END,
           CASE WHEN instr(rest, ' (') > 0 AND rest LIKE '%)'
                THEN substr(rest, instr(rest, ' (') + 2, length(rest) - instr(rest, ' (') - 2) END
    FROM (SELECT id, job_id, time, substr(message, 9) AS rest FROM logs
          WHERE stream = 'event' AND message LIKE 'status: %'
          UNION ALL
          SELECT id, job_id, time, 'new (created)' FROM logs
          WHERE stream = 'event' AND message LIKE 'job %' AND message LIKE '% created (%')
    ORDER BY id;
    -- traffic history (dashboard/traffic.py): one row per endpoint and period, at two resolutions (seconds)
    CREATE TABLE traffic (
        job_id TEXT NOT NULL,
        resolution INTEGER NOT NULL,    -- 5 (kept an hour) or 60 (kept a day)
        t REAL NOT NULL,                -- the start of the period, a multiple of the resolution
        seconds REAL NOT NULL,          -- how much of the period was sampled
        requests INTEGER NOT NULL,
        errors INTEGER NOT NULL,        -- 5xx answers other than 503
        rejected INTEGER NOT NULL,      -- 503s: overloaded
        latency_ms_sum REAL NOT NULL,
        buckets TEXT NOT NULL DEFAULT '[]',  -- calls per latency bucket (runtime DURATION_BUCKETS, then +Inf)
        PRIMARY KEY (job_id, resolution, t)
    );
    """,
    4: """
    -- the backend its endpoint was launched on (local, ray): a control plane on another one leaves the job alone
    -- rather than launch it a second time where it does not run (NULL: from before, taken as this one's)
    ALTER TABLE jobs ADD COLUMN backend TEXT;
    """,
    5: """
    -- a job's revisions (revisions.py): what it served, one row each; 1 is what create made
    CREATE TABLE revisions (
        job_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        status TEXT NOT NULL,           -- starting, serving, retired, failed
        spec TEXT NOT NULL,             -- model, endpoint, environment, resources as the job's spec holds them
        source TEXT NOT NULL DEFAULT '{}',  -- what was fetched: git_commit, size; its environment
        reason TEXT,                    -- why it failed
        created REAL NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (job_id, number)
    );
    """,
    6: """
    -- which revision's process printed a line of output (NULL: a platform event, a Ray replica's, or before)
    ALTER TABLE logs ADD COLUMN revision INTEGER;
    -- each time a revision began serving (an update or a rollback switched to it): the traffic chart's markers
    CREATE TABLE revision_switches (
        job_id TEXT NOT NULL,
        time REAL NOT NULL,
        number INTEGER NOT NULL
    );
    CREATE INDEX revision_switches_job ON revision_switches(job_id, time);
    """,
    7: """
    -- the traffic chart's errors series and its split by route (dashboard/traffic.py)
    ALTER TABLE traffic ADD COLUMN client_errors INTEGER NOT NULL DEFAULT 0;  -- 4xx answers
    ALTER TABLE traffic ADD COLUMN routes TEXT NOT NULL DEFAULT '{}';  -- route label -> [calls, 4xx, 5xx but 503]
    """,
}
