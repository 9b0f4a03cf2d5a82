"""
``twistd wskeepalive --workers N``: N worker processes, each with its own
reactor, serving the same ``--listen`` ports.

One process holds at most as many connections as it may open files (20,000
on the machines this was measured on, a hard limit), and one reactor uses one
core.  Workers multiply both.  Operators' guide: ``docs/workers.md``.

**The parent** (the twistd process) runs no reactor work of its own.  The
modules, in the order a worker's life meets them:

- :mod:`.ports` -- before any worker starts, the parent binds (without
  listening) a ``SO_REUSEPORT`` socket on every port, so that a port in use
  or a ``tcp:0`` is dealt with once and the port stays reserved while
  workers come and go; each worker listens on its own socket there;
- :mod:`.control` -- how parent and worker talk: the worker's command line
  (the reactor twistd installed, the options), ``probe N`` and ``retire``
  on its stdin, JSON log records on its stdout;
- :mod:`.process` -- one worker as the parent sees it: its log relayed
  (each event with ``worker`` and ``worker_pid``), probe answers consumed,
  the moment it listens, its end;
- :mod:`.supervisor` -- N seats, a crashed or hung worker replaced after
  a delay (:mod:`.backoff`), SIGTERM or SIGINT drains every worker and exits 0;
- :mod:`.liveness` -- probes; a worker whose reactor answers none for
  ``--worker-timeout`` is killed and replaced;
- :mod:`.rolling` and :mod:`.hangup` -- SIGHUP replaces the workers one
  seat at a time, the port accepting throughout;
- :mod:`.progress` -- a draining worker reports the connections it has
  left every second; a worker told to stop or retire is killed only once
  it has gone its drain's bound without progress;
- :mod:`.metrics` -- with ``--metrics ENDPOINT``, each worker serves its own
  metrics on a loopback port the parent picked, and the parent serves them
  all at ``ENDPOINT/metrics``, each series labelled ``worker="0"`` to
  ``"N-1"``, its own labelled ``worker="parent"``, with the workers' pids,
  liveness, restarts and hangs beside them.

**A worker** is :mod:`twisted_keepalive.server.worker_main`; one whose
parent has gone (its stdin closes) shuts down too.
"""
