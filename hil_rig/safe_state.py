"""Leave every instrument in the bench file's safe state, on every exit path.

:class:`SafeState` is a context manager: on the way out (normal end, an
exception, Ctrl-C, SIGTERM) it applies each instrument's ``safe_state`` from
the bench file: supplies' output off (or as configured, with optional
setpoints), relay boards with every channel off except those listed in
``on``. Each instrument is handled on its own, so a dead one (bounded retries,
then an error) does not keep the others from being made safe.

SIGTERM is turned into :class:`Terminated` (a ``SystemExit``) while inside the
block, so ``finally`` clauses and context managers unwind as for Ctrl-C.
SIGKILL cannot be caught: nothing can make that path safe in software.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Mapping
from types import FrameType
from typing import Any

from hil_rig.benchfile import Bench, SupplySafeState, SwitchSafeState
from hil_rig.instruments.base import PowerSupply, Switch
from hil_rig.instruments.errors import InstrumentError

log = logging.getLogger("hil_rig.safe_state")


class Terminated(SystemExit):
    """Raised in the main thread when SIGTERM arrives inside a :class:`SafeState` block."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def apply_safe_state(
    bench: Bench, supplies: Mapping[str, PowerSupply], switches: Mapping[str, Switch]
) -> list[str]:
    """Put every instrument in its safe state; return the errors (empty when all went well)."""
    errors: list[str] = []
    for name, sw in switches.items():
        spec = bench.instrument(name)
        assert isinstance(spec.safe_state, SwitchSafeState)
        states = [c in spec.safe_state.on for c in range(sw.channels)]
        try:
            sw.set_all(states)
        except (InstrumentError, OSError, ValueError) as exc:
            errors.append(f"relay board {name!r}: could not reach its safe state: {exc}")
    for name, ps in supplies.items():
        spec = bench.instrument(name)
        safe = spec.safe_state
        assert isinstance(safe, SupplySafeState)
        try:
            ps.set_output(safe.output)
            if safe.voltage_v is not None:
                ps.set_voltage(safe.voltage_v)
            if safe.current_a is not None:
                ps.set_current_limit(safe.current_a)
        except (InstrumentError, OSError, ValueError) as exc:
            errors.append(f"supply {name!r}: could not reach its safe state: {exc}")
    for e in errors:
        log.error(e)
    return errors


class SafeState:
    """``with SafeState(bench, supplies, switches): ...`` -- safe on every way out."""

    def __init__(
        self,
        bench: Bench,
        supplies: Mapping[str, PowerSupply],
        switches: Mapping[str, Switch],
        *,
        handle_signals: bool = True,
    ) -> None:
        self.bench = bench
        self.supplies = supplies
        self.switches = switches
        self.handle_signals = handle_signals
        self.errors: list[str] = []
        self._old: dict[int, Any] = {}

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    def __enter__(self) -> SafeState:
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def apply(self) -> list[str]:
        self.errors = apply_safe_state(self.bench, self.supplies, self.switches)
        return self.errors

    def __exit__(self, *exc: object) -> None:
        # a second SIGTERM/SIGINT must not interrupt the safing itself
        blocked = False
        if self._old:
            for sig in self._old:
                signal.signal(sig, signal.SIG_IGN)
            blocked = True
        try:
            self.apply()
        finally:
            if blocked:
                for sig, old in self._old.items():
                    signal.signal(sig, old)
                self._old.clear()
