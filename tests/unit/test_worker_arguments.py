"""
Every ``wskeepalive`` option reaches the workers of ``--workers``, but
those the parent sets for each worker or keeps for itself; and the command
line the parent writes is the one a worker reads.
"""

from __future__ import annotations

import pytest

from twisted_keepalive.server.options import Options
from twisted_keepalive.server.workers.control import COMMAND_VERSION, WorkerCommand, read_command

#: Options the parent does not pass on: it sets them for each worker
#: (--listen, --metrics), or they are the parent's own.
_PARENTS = {"metrics", "workers", "worker-timeout"}


def test_every_option_given_reaches_the_workers() -> None:
    options = Options()
    for name, *_ in options.optParameters:
        options[name] = f"value of {name}"
    options["allowed-origin"] = ["https://a.example:443", "https://b.example:443"]
    options["cors-origin"] = ["https://c.example"]
    arguments = options.worker_arguments()
    pairs = list(zip(arguments[::2], arguments[1::2], strict=True))
    for name, *_ in options.optParameters:
        assert ((f"--{name}", f"value of {name}") in pairs) == (name not in _PARENTS), name
    assert ("--allowed-origin", "https://a.example:443") in pairs
    assert ("--allowed-origin", "https://b.example:443") in pairs
    assert ("--cors-origin", "https://c.example") in pairs


def test_no_flag_is_left_behind() -> None:
    # worker_arguments passes parameters; a flag (--something without a
    # value) would need passing on too.
    assert not getattr(Options, "optFlags", None)


def test_the_command_a_worker_reads_is_the_one_written() -> None:
    command = WorkerCommand("asyncio", ("--listen", "tcp:0", "--ping-interval", "5"))
    assert read_command(command.argv()[3:]) == command


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "expected one argument"),
        (['["--listen", "tcp:0"]'], f"reads commands of version {COMMAND_VERSION}, not None"),
        (['{"version": 99, "options": []}'], "not 99: restart the parent"),
        ([f'{{"version": {COMMAND_VERSION}, "options": [1]}}'], "wrong type"),
    ],
)
def test_a_command_from_another_version_is_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError) as refused:
        read_command(argv)
    assert message in str(refused.value)
