"""
``twistd wskeepalive``: a WebSocket server with keepalive, from command-line
options.

Follow ``--ping-interval`` from the command line to the pings:
:class:`~.options.Options` turns the text into validated
:class:`~.settings.Settings` (a wrong value is a usage error, never a
traceback); :func:`~.service.build_service` hands ``Settings.keepalive`` to
:func:`~twisted_keepalive.set_keepalive_options` on the factory; each
connection's :class:`~twisted_keepalive.KeepaliveMixin` reads it when the
connection opens and schedules its pings from there.

Two ways in: :mod:`.twistd`, what the plugin names (the options, and either
one server, :mod:`.service`, or with ``--workers N`` a parent that runs N of
them, :mod:`.workers`); and :mod:`.worker_main`, what each worker runs.
"""
