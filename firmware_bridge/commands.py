"""The link's commands, in one table: what a host can ask a board.

:class:`firmware_bridge.link.Link` has one method per command. Each plain
function-management call (``call``: a TC[8,1] whose JSON arguments are the
method's, by name) is generated from this table; the others are written out in
``link.py`` with the signature given here (a test holds them to it). A
command marked ``begin`` also has a ``<name>_begin`` method: sent now, its
``wait()`` later. The commands marked ``flight`` are those the flight software
uses (``flight_sw.interfaces.PayloadLink`` is made from them with
:func:`link_protocol`); the rig's gated link wraps the same ones
(``hil_rig.run.adapters.GatedLink``). The wire side of each command (service,
function id, APID) is in :mod:`firmware_bridge.protocol` and ``docs/protocol.md``.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

_REQUIRED = inspect.Parameter.empty


def _sig(*required: str, **optional: Any) -> inspect.Signature:
    """``self``, then the required parameters, then the optional ones with their defaults."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature(
        [inspect.Parameter("self", kind)]
        + [inspect.Parameter(n, kind) for n in required]
        + [inspect.Parameter(n, kind, default=d) for n, d in optional.items()])


@dataclass(frozen=True)
class Command:
    name: str
    sig: inspect.Signature
    doc: str
    call: bool = False  # a plain function-management call: its Link method is generated
    flight: bool = False  # the flight software uses it (PayloadLink)
    begin: bool = False  # also <name>_begin: sent now, awaited with .wait()

    @property
    def names(self) -> tuple[str, ...]:
        """The methods the command gives a link: its own, and ``<name>_begin``."""
        return (self.name, f"{self.name}_begin") if self.begin else (self.name,)


COMMANDS: tuple[Command, ...] = (
    Command("ping", _sig(timeout_s=None), "TC[17,1]; the round trip in seconds.", flight=True),
    Command("board_info", _sig(), "What the board is (kind, model, protocol version, clock, "
            "housekeeping layout); the link learns the layout's names and the clock."),
    Command("housekeeping", _sig(), "TC[3,27]: the housekeeping record, decoded.", flight=True),
    Command("enable_periodic_hk", _sig("period_s"), "TC[3,5]: a housekeeping record every period_s."),
    Command("disable_periodic_hk", _sig(), "TC[3,6]: no more periodic housekeeping."),
    Command("set_throttle", _sig("throttle"), "The duty cycle 0..1; gives throttle and "
            "effective_throttle.", call=True, flight=True, begin=True),
    Command("start_job", _sig("workload", params=None, deadline_s=None),
            "Start a job; gives its id.", flight=True),
    Command("job_status", _sig("job_id"), "A job's state, step, checkpoint and digest.",
            call=True, flight=True),
    Command("checkpoint", _sig("job_id"), "Save a job's state; gives checkpoint_step.",
            call=True, flight=True, begin=True),
    Command("suspend", _sig("job_id"), "Checkpoint a job and stop it.", call=True, flight=True),
    Command("resume", _sig("job_id"), "Resume a suspended job from its checkpoint.",
            call=True, flight=True),
    Command("cancel", _sig("job_id"), "End a job.", call=True, flight=True),
    Command("reboot", _sig(), "Restart the agent (jobs stop; checkpoints stay).", call=True, flight=True),
    Command("time_sync", _sig("t_ns", report=True), "Set the board's clock; with report, the reply "
            "carries the housekeeping record and the jobs' states.", flight=True, begin=True),
    Command("inject_seu", _sig("job_id", index=None, bit=None),
            "Test mode: flip a bit of a job's working memory.", call=True),
    Command("inject_hang", _sig(duration_s=0.0), "Test mode: the board stops answering "
            "(0: until power-cycled).", call=True),
    Command("test_ledger", _sig(), "Test mode: every command key the agent executed."),
)

BY_NAME = {c.name: c for c in COMMANDS}
#: Every method the flight software may call on a link, begin variants included.
FLIGHT_METHODS: tuple[str, ...] = tuple(n for c in COMMANDS if c.flight for n in c.names)


def plain_call(cmd: Command, begin: bool = False):
    """The Link method of a plain call: its arguments, by name, to ``self.call``; with
    ``begin``, ``<name>_begin``, sent now (``self.call_begin``): ``.wait()`` gives the result."""
    sig, name = cmd.sig, cmd.name
    send = "call_begin" if begin else "call"

    def method(self, *args, **kwargs):
        bound = sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        return getattr(self, send)(name, {k: v for k, v in bound.arguments.items() if k != "self"})

    if begin:
        return _named(method, f"{name}_begin", sig, f"{cmd.doc} Sent now; ``.wait()`` gives the result.")
    return _named(method, name, sig, cmd.doc)


def _named(fn, name: str, sig: inspect.Signature, doc: str):
    fn.__name__ = fn.__qualname__ = name
    fn.__signature__ = sig
    fn.__doc__ = doc
    return fn


def link_protocol(name: str, module: str, doc: str) -> type:
    """A runtime-checkable Protocol with the flight software's commands (``flight``),
    each with its signature from the table (``<name>_begin`` variants are optional:
    not members), as a class ``name`` of ``module``."""
    def body(ns: dict) -> None:
        ns["__doc__"], ns["__module__"] = doc, module
        for c in COMMANDS:
            if c.flight:
                def stub(self, *args, **kwargs) -> Any: ...
                ns[c.name] = _named(stub, c.name, c.sig, c.doc)

    return runtime_checkable(types.new_class(name, (Protocol,), {}, body))
