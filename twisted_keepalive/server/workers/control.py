"""
How the parent and a worker talk: the worker's command line, the lines the
parent writes to its stdin, and the records the worker writes to its stdout.

**The command line**: ``python -m WORKER_MODULE COMMAND``, where COMMAND is
one JSON object -- the reactor to install and the ``wskeepalive`` options --
written by :meth:`WorkerCommand.argv` and read by :func:`read_command`.  It
carries a version: after SIGHUP the parent, still running its old code,
starts workers from the new code.  A worker that cannot read its parent's
command refuses to start, the rolling restart stops, and the old workers
keep serving; restart the parent to change how the two talk.

**Stdin** (the parent's end of a pipe), one line each:

- ``probe N`` -- the worker's reactor answers with a log record whose
  ``keepalive_event`` is :data:`PROBE_REPLY` and whose ``probe`` is N; the
  parent takes it as a sign of life and does not relay it;
- ``retire`` -- drain without the grace period (others serve this port
  already), then exit 0;
- ``stop`` -- the parent is stopping: drain as one server does on SIGTERM,
  then exit 0;
- ``hurry`` -- a second stop signal reached the parent: skip what is left of
  the grace and spread;
- end of file -- the parent has gone: stop as after SIGTERM.

The parent says ``stop`` and ``hurry`` on stdin rather than with signals
because a stop signal often reaches the workers directly too: a terminal's
Ctrl-C goes to the whole process group, systemd's default ``KillMode``
signals the whole control group.  Taken with the parent's SIGTERM, that
would be a worker's second signal, and would cut its grace short.  Signals
to a worker keep the meaning they have for one server: the first stops it
gracefully, the next ones hurry the drain; the parent's ``stop`` is never
counted among them.  (A worker of this code still follows a parent that
sends SIGTERM instead, as the parent of a rolling restart onto this code
does: the conversation's version stays 1.)

**Stdout** carries the worker's log as JSON records (``jsonFileLogObserver``),
which the parent relays into its own log; :data:`LISTENING` says the
worker's ports listen, and :data:`DRAIN_PROGRESS`, once a second while it
drains, how many connections it has left (:mod:`.progress`): the parent
kills a draining worker only once that count has stopped falling.  (A
worker of older code sends no such record; the parent then kills it, as it
used to, the stop bound after it told it to stop.)

Twisted's reactor is chosen by twistd (``--reactor``) before the plugin
runs; each worker installs the same one by its plugin name
(:func:`reactor_name`), which twistd's ``--help-reactors`` lists.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.application.reactors import getReactorTypes

__all__ = [
    "COMMAND_VERSION",
    "DRAIN_PROGRESS",
    "HURRY",
    "LISTENING",
    "PROBE_REPLY",
    "RETIRE",
    "STOP",
    "WORKER_MODULE",
    "WorkerCommand",
    "probe_line",
    "reactor_name",
    "read_command",
    "read_probe",
]

#: What each worker runs, as ``python -m WORKER_MODULE COMMAND``.
WORKER_MODULE = "twisted_keepalive.server.worker_main"

#: Bumped whenever the command or the stdin/stdout conversation changes.
COMMAND_VERSION = 1

#: The ``keepalive_event`` of a worker's answer to a probe.
PROBE_REPLY = "worker_probe_reply"

#: The ``keepalive_event`` a worker logs once its ports listen.
LISTENING = "worker_listening"

#: The ``keepalive_event`` a draining worker logs every second, with
#: ``connections``, the number it still has.
DRAIN_PROGRESS = "drain_progress"

#: The line that tells a worker to drain without grace and exit.
RETIRE = b"retire"

#: The line that tells a worker to drain (with the grace) and exit.
STOP = b"stop"

#: The line that tells a draining worker to skip the rest of its grace and spread.
HURRY = b"hurry"

_PROBE = b"probe"


def probe_line(number: int) -> bytes:
    """The line that asks a worker's reactor to answer probe ``number``."""
    return b"%s %d\n" % (_PROBE, number)


def read_probe(line: bytes) -> int | None:
    """The number of the probe ``line`` asks for, or ``None`` if it is no probe."""
    word, _, number = line.strip().partition(b" ")
    if word != _PROBE or not number.isdigit():
        return None
    return int(number)


@dataclass(frozen=True)
class WorkerCommand:
    """
    What one worker is told on its command line.

    :ivar reactor: the plugin name of the reactor to install (``epoll``,
        ``asyncio``...), or ``None`` for Twisted's default.
    :ivar options: the ``wskeepalive`` options, ``--listen`` and
        ``--metrics`` included.
    """

    reactor: str | None
    options: tuple[str, ...]

    def argv(self) -> list[str]:
        """The worker's whole command line."""
        text = json.dumps(
            {"version": COMMAND_VERSION, "reactor": self.reactor, "options": list(self.options)}
        )
        return [sys.executable, "-m", WORKER_MODULE, text]


def read_command(arguments: Sequence[str]) -> WorkerCommand:
    """
    The command a worker was given (its ``sys.argv[1:]``).

    :raise ValueError: if it is not one this code can follow.
    """
    if len(arguments) != 1:
        raise ValueError("expected one argument, the parent's command as JSON")
    command = json.loads(arguments[0])
    version = command.get("version") if isinstance(command, dict) else None
    if version != COMMAND_VERSION:
        raise ValueError(
            f"this worker reads commands of version {COMMAND_VERSION}, not {version!r}: "
            "restart the parent to run this code"
        )
    reactor, options = command.get("reactor"), command.get("options")
    if not (reactor is None or isinstance(reactor, str)) or not (
        isinstance(options, list) and all(isinstance(o, str) for o in options)
    ):
        raise ValueError("the command's reactor or options have the wrong type")
    return WorkerCommand(reactor, tuple(options))


def reactor_name(reactor: Any) -> str | None:
    """
    The plugin name of ``reactor``, the one installed, or ``None`` if no
    reactor plugin provides it.
    """
    # twistd installs a reactor plugin by name, and the plugin's install()
    # lives in the module that defines the reactor's class; the "default"
    # plugin's module only picks one, so its class's own module matches a
    # named plugin ("epoll" on Linux).
    module = type(reactor).__module__
    for installer in getReactorTypes():
        if getattr(installer, "moduleName", None) == module:
            return str(installer.shortName)
    return None
