"""
Counting a Python step's instructions with callgrind: the trampoline that
runs a step inside libffi's ``ffi_call`` (the one function callgrind is told
to count, with ``--toggle-collect=ffi_call``), the valgrind run itself, and
the patching that counts one Python function at a time.

Why a trampoline: CPython 3.11 runs Python-to-Python calls inside one C
frame of its eval loop, so callgrind cannot tell one Python function from
another.  Calling a step from C through a ctypes function pointer puts it
under ``ffi_call``: only that is counted.  To attribute a cycle's cost to
one Python function, that function alone is replaced by a wrapper that
calls it through the trampoline, and the rest runs directly; the counted
total is then that function's inclusive cost (plus the trampoline's own,
which the ``empty`` step measures and the caller subtracts).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The C function whose calls (and everything under them) callgrind counts.
TOGGLE = "ffi_call"


class Measured:
    """
    ``measured(function, args)`` calls ``function(*args)`` from C, through
    libffi's ``ffi_call``: the one place callgrind counts.  Errors raised in
    the step are re-raised here (ctypes would only print them).
    """

    def __init__(self) -> None:
        import ctypes

        prototype = ctypes.CFUNCTYPE(None)
        self._pending: tuple[Callable[..., object], tuple[Any, ...], dict[str, Any]] | None = None
        self._result: object = None
        self._error: BaseException | None = None
        self._callback = prototype(self._run)  # kept alive as long as self
        address = ctypes.cast(self._callback, ctypes.c_void_p).value
        self._call = prototype(address)

    def _run(self) -> None:
        assert self._pending is not None
        function, args, kwargs = self._pending
        try:
            self._result = function(*args, **kwargs)
        except BaseException as e:
            self._error = e

    def __call__(
        self,
        function: Callable[..., object],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
    ) -> object:
        self._pending = (function, args, kwargs or {})
        self._call()
        result, self._result, self._pending = self._result, None, None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return result


def direct(function: Callable[..., object], args: tuple[Any, ...]) -> object:
    """A step run without counting it."""
    return function(*args)


class Attributed:
    """
    Count only ``target`` (``"module:Class.method"`` or ``"module:function"``):
    while patched in, every call to it runs through the trampoline, and
    :attr:`calls` counts them.
    """

    def __init__(self, target: str) -> None:
        module_name, _, path = target.partition(":")
        owner: Any = importlib.import_module(module_name)
        *outer, self.name = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        if self.name not in vars(owner):
            raise ValueError(f"{target}: {self.name} is not defined on {owner!r} itself")
        self.owner = owner
        self.original = vars(owner)[self.name]
        self.calls = 0

    def patch(self) -> None:
        measured = Measured()
        original = self.original

        def counted(*args: Any, **kwargs: Any) -> object:
            self.calls += 1
            return measured(original, args, kwargs)

        setattr(self.owner, self.name, counted)

    def unpatch(self) -> None:
        setattr(self.owner, self.name, self.original)


def run_callgrind(
    script: str, arguments: list[str], valgrind: str, nothing_ok: bool = False
) -> tuple[int, str]:
    """
    Run ``python SCRIPT ARGUMENTS`` under callgrind, counting ``ffi_call``
    only: the instructions counted and what the script printed.  Counting
    nothing is an error unless ``nothing_ok`` (a function never called).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        completed = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                "--collect-atstart=no",
                f"--toggle-collect={TOGGLE}",
                f"--callgrind-out-file={out}",
                sys.executable,
                script,
                *arguments,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"valgrind failed for {arguments}:\n{completed.stderr[-3000:]}")
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no totals in callgrind output for {arguments}")
        if int(match.group(1)) == 0 and not nothing_ok:
            raise RuntimeError(
                f"callgrind counted nothing under {TOGGLE} for {arguments}: is libffi's "
                f"{TOGGLE} visible to valgrind (an exported symbol) in this Python's ctypes?"
            )
        return int(match.group(1)), completed.stdout
