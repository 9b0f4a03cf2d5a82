"""The default ``--protocol`` of ``--framing twisted``: an echo server."""

from __future__ import annotations

import contextlib
from typing import Any

from twisted.python.failure import Failure
from wsproto.utilities import LocalProtocolError

__all__ = ["EchoProtocol"]


class EchoProtocol:
    """
    A ``twisted.web.websocket`` protocol that sends every text or bytes
    message back as it came, while the connection is open.
    """

    transport: Any = None

    @classmethod
    def buildProtocol(cls, request: Any) -> EchoProtocol:
        return cls()

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        self._echo(self.transport.sendTextMessage, message)

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        self._echo(self.transport.sendBytesMessage, bytes(data))

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.transport = None

    @staticmethod
    def _echo(send: Any, message: Any) -> None:
        # A message can cross our Close (the 1001 of a shutdown, a 1011):
        # Twisted still delivers it, but wsproto refuses to send once our
        # Close has gone, and the peer expects no answer by then.
        with contextlib.suppress(LocalProtocolError):
            send(message)
