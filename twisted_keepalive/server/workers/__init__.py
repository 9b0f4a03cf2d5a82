"""
``twistd wskeepalive --workers N``: N worker processes, each with its own
reactor, serving the same ``--listen`` ports.

One process holds at most as many connections as it may open files (20,000
on the machines this was measured on, a hard limit), and one reactor uses one
core.  Workers multiply both.

**The parent** (the twistd process, :mod:`.supervisor`) runs no reactor work
of its own: before starting the workers it binds (without listening) a
``SO_REUSEPORT`` socket on every port (:mod:`.ports`) -- so that a port in
use or a ``tcp:0`` is dealt with once, before any worker starts, and the port
stays reserved while workers come and go -- then it runs
``python -m twisted_keepalive.server.worker_main`` N times, passes their log
events on to its own log (:mod:`.process`, each event with ``worker`` and
``worker_pid`` fields), and replaces a worker that exits unexpectedly.
SIGTERM or SIGINT to the parent sends SIGTERM to every worker; each closes
its connections with 1001 "going away" as a single server does, and the
parent exits 0 once all have exited.  A worker whose parent has gone (its
stdin closes) shuts down too.

**Metrics** (:mod:`.metrics`).  With ``--metrics ENDPOINT``, each worker
serves its own metrics on a loopback port the parent picked, and the parent
serves them all at ``ENDPOINT/metrics``, each series labelled ``worker="0"``
to ``"N-1"``, with ``twisted_keepalive_worker_pid``, ``_worker_up`` and
``_worker_restarts_total`` beside them: one scrape target, per-worker
figures, and totals with ``sum without (worker) (...)``.
"""
