"""The guard: the one object tools talk to for anything policy-bound or destructive (`guard.Guard`).

    guard.py    the façade: status, reading (usage, find), tasks; hands out the removal
    removal.py  one removal, preview to execution: who must decide, waiting for them, leases, resumption
    ports.py    how a removal reaches the person (Asker, ReviewPages) and what their Decision is
    paths.py    the pure path policy (no I/O)
    inspect.py  the real objects on storage: links on the way, what a folder holds
    insight.py  disk usage and find filters over a walk
    seen.py     the plan: what the dry run saw, kept behind its token
    report.py   answers that fit an agent's context, and the person's form
    tokens.py   sealing confirmation tokens (a clock is passed in)
    store.py    plans and their states (asked, decided, running under a lease, done) across restarts and
                replicas (SQLite | Redis)
    audit.py    intent before send, results after; fail closed

Nothing else imports the client's removal module (an import-linter contract).
"""
