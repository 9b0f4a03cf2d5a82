"""
Keepalive settings as attributes of a protocol class, checked when assigned.

A setting can be given on the protocol class (in its body or assigned later,
``Chat.ping_interval = cfg.interval``), per factory
(:func:`twisted_keepalive.set_keepalive_options
<twisted_keepalive.autobahn.factory.set_keepalive_options>`) or on one
connection (``self.ping_interval = 5`` in ``onConnect``).  Whatever the route, the value
is validated at the moment it is assigned and stored behind a
:class:`Setting` descriptor, which resolves the precedence when the
connection opens: the connection's own value, then the factory's, then the
class's.
"""

from __future__ import annotations

from typing import Any

from ..core.config import SETTING_NAMES, validate_setting
from .hooks import misplaced_base

#: The attribute of a factory that holds its keepalive record.
FACTORY_RECORD = "_keepalive"


class Setting:
    """
    A keepalive setting on a protocol class.  Reading it on an instance gives
    the value in force for that connection: its own, else its factory's,
    else its class's.
    """

    __slots__ = ("default", "name", "slot")

    def __init__(self, name: str, default: float | bool | None) -> None:
        self.name = name
        self.default = default
        self.slot = "_keepalive_own_" + name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self.default
        own = instance.__dict__
        if self.slot in own:
            return own[self.slot]
        record = getattr(getattr(instance, "factory", None), FACTORY_RECORD, None)
        if record is not None and self.name in record.options:
            return record.options[self.name]
        return self.default

    def __set__(self, instance: object, value: object) -> None:
        instance.__dict__[self.slot] = validate_setting(self.name, value)

    def __delete__(self, instance: object) -> None:
        instance.__dict__.pop(self.slot, None)


def checked_setting(owner: type, name: str, value: object) -> Setting:
    """``value`` validated as the class-level setting ``name`` of ``owner``."""
    if isinstance(value, Setting):
        return value
    try:
        return Setting(name, validate_setting(name, value))
    except (TypeError, ValueError) as e:
        raise type(e)(f"{owner.__qualname__}.{e}") from None


class KeepaliveMeta(type):
    """
    The metaclass of :class:`twisted_keepalive.autobahn.mixin.KeepaliveMixin`: a setting
    in a class body or assigned to the class later is validated then and
    kept behind its descriptor, and a class whose bases would let
    Autobahn's dispatchers run instead of the mixin's is refused.
    """

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
        super().__init__(name, bases, namespace)
        for setting in SETTING_NAMES:
            if setting in namespace:
                type.__setattr__(cls, setting, checked_setting(cls, setting, namespace[setting]))
        mixin = _mixin_of(cls)
        if mixin is None or mixin is cls:
            return
        base = misplaced_base(cls, mixin)
        if base is not None:
            first = [b for b in bases if issubclass(b, mixin)]
            fixed = ", ".join(b.__name__ for b in first + [b for b in bases if b not in first])
            raise TypeError(
                f"{cls.__qualname__} lists KeepaliveMixin after {base.__qualname__}, so "
                "Autobahn's event dispatchers would run instead of the mixin's and the "
                f"connection would get no keepalive; put the mixin first: "
                f"class {name}({fixed})"
            )

    def __setattr__(cls, name: str, value: Any) -> None:
        if name in SETTING_NAMES:
            value = checked_setting(cls, name, value)
        super().__setattr__(name, value)


def _mixin_of(cls: type) -> type | None:
    # The KeepaliveMixin class itself: the first class in the MRO created by
    # this metaclass with no such class above it.
    candidates = [k for k in cls.__mro__ if isinstance(k, KeepaliveMeta)]
    return candidates[-1] if candidates else None
