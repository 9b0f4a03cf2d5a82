"""
How long a seat waits before its worker is started again
(:class:`Backoff`): at once, nearly, after a worker that ran a while; ever
longer after workers that keep dying young, so that one that cannot start
(a missing module, a port taken) does not spin.  The idea of procmon's
``ProcessMonitor`` (``minRestartDelay``, ``maxRestartDelay``), with the
workers' own figures.
"""

from __future__ import annotations

__all__ = ["FIRST_RESTART_DELAY", "MAX_RESTART_DELAY", "STABLE_AFTER", "Backoff"]

#: Seconds a replacement waits after a worker that ran less than
#: :data:`STABLE_AFTER` seconds exited; doubled for each such exit in a row,
#: up to :data:`MAX_RESTART_DELAY`.
FIRST_RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 10.0

#: Seconds after which a worker's exit no longer counts as dying young: its
#: replacement waits only :data:`FIRST_RESTART_DELAY`.
STABLE_AFTER = 10.0


class Backoff:
    """The restart delay of each of ``seats`` seats, from how its workers fared."""

    def __init__(self, seats: int) -> None:
        self._young_exits_in_a_row = dict.fromkeys(range(seats), 0)

    def delay(self, seat: int, ran: float) -> float:
        """
        Seconds to wait before starting seat ``seat``'s next worker, its last
        one having run ``ran`` seconds.
        """
        young = self._young_exits_in_a_row[seat] + 1 if ran < STABLE_AFTER else 0
        self._young_exits_in_a_row[seat] = young
        return min(MAX_RESTART_DELAY, FIRST_RESTART_DELAY * 2.0 ** max(0, young - 1))
