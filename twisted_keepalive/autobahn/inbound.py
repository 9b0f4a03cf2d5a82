"""
The peer's Pong, read without Autobahn's general frame parser.

Most reads of a keepalive connection at rest are one thing: the peer's Pong
to our Ping, alone in its TCP segment.  Autobahn takes every read through
``dataReceived``, which formats the fields of a debug line even with debug
logging off, then through a parser built for messages of any size (a frame
header object, a C masker per frame, a list of payload pieces): together
about two thirds of a keepalive cycle's instructions
(``bench/callgrind_cycle.py --attribute``).  For that one case this module
does what Autobahn would do, and nothing else: the same checks on the frame,
the same traffic counter, the same ``_onPong`` dispatch.  Any other read --
a message, a Pong split over two reads or sharing one, a frame Autobahn
would refuse, a connection logging frames or octets, Autobahn's own
auto-ping awaiting its Pong -- goes through Autobahn as before.

Each Autobahn and txaio internal read here is in one small function, and
``tests/unit/test_inbound.py`` fails when one disappears or behaves
differently from Autobahn's own path.
"""

from __future__ import annotations

from typing import Any

import txaio

from ..glue.transport import xor_mask

#: FIN + Pong: the only first byte of a Pong Autobahn accepts as is (no
#: reserved bits; a control frame is never fragmented).
_FIN_PONG = 0x8A


def _off_level_method() -> Any:
    # txaio binds every level below a logger's own to one shared no-op
    # function; take it from a logger of our own through the public API
    # (on Twisted, which autobahn.twisted selects too).
    api: Any = txaio  # make_logger is bound when a flavour is chosen
    api.use_twisted()
    logger = api.make_logger()
    logger.set_log_level("info")
    return logger.debug


_DEBUG_OFF = _off_level_method()


def debug_logging_off(protocol: Any) -> bool:
    """
    Whether Autobahn's ``dataReceived`` would log nothing at debug level for
    ``protocol`` (its debug line is then skipped, with the formatting of its
    fields, which costs more than the rest of a read of a Pong).
    """
    return protocol.log.debug is _DEBUG_OFF


def parser_between_frames(protocol: Any) -> bool:
    """
    Whether Autobahn's parser on ``protocol`` is open and between frames,
    with nothing buffered, and would do nothing for a Pong but hand it to
    ``_onPong``: no frame or octet logging, no auto-ping awaiting it.
    """
    return (
        protocol.state == protocol.STATE_OPEN
        and not protocol.data
        and getattr(protocol, "current_frame", None) is None
        and not protocol.logOctets
        and not protocol.logFrames
        and not protocol.autoPingPending
    )


def lone_pong(data: bytes, masked: bool) -> bytes | None:
    """
    The payload of the Pong that ``data`` is, whole and alone, or ``None``.

    :param masked: whether the peer's frames are masked (it is a client):
        a server's Pong must not be and a client's must be, as Autobahn
        checks by default; anything else is left to Autobahn.
    """
    length = len(data)
    if length < 2 or data[0] != _FIN_PONG:
        return None
    size = data[1]
    if masked:
        # The mask bit, then at most 125 bytes (a control frame's limit).
        size -= 0x80
        if not 0 <= size <= 125 or length != 6 + size:
            return None
        return xor_mask(data[2:6], data[6:])
    if size > 125 or length != 2 + size:
        return None
    return data[2:]


def read_lone_pong(protocol: Any, data: bytes, masked: bool) -> bool:
    """
    If ``data`` is a lone Pong Autobahn would take as is, take it as
    Autobahn would -- count its bytes, dispatch it to ``_onPong`` -- and say
    so; else do nothing and return ``False``.
    """
    if not parser_between_frames(protocol) or (masked and not protocol.applyMask):
        return False
    payload = lone_pong(data, masked)
    if payload is None:
        return False
    protocol.trafficStats.incomingOctetsWireLevel += len(data)
    protocol._onPong(payload)
    return True
