"""The console's screen (Textual): small panels fed by one telemetry stream.

The app pulls the source (:mod:`hil_rig.console.stream`) ten times a second and
hands each panel what it shows; panels never talk to each other. The command
line takes telecommands (checked against the dictionary; hazardous ones armed
first: Enter arms, Enter again executes, Esc disarms), ``inject``, ``pause``,
``resume``, ``step``, ``speed``, ``run PROCEDURE`` and ``filter``.
Keys: F5 pause/resume, F6 step one second, F7/F8 slower/faster, F9/F10 seek
back/forward a minute (replay), Ctrl+Q quit.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Input, RichLog, Static

from flight_sw.dictionary import BOARD_STATES, MODE_NAMES, hk_channels
from hil_rig.console.stream import CommandStack
from hil_rig.constants import NS_PER_S as NS
from hil_rig.constants import ZERO_CELSIUS_K
from hil_rig.procedure import (
    Line,
    LineError,
    completions,
    condition_met,
    parse_line,
    parse_procedure,
)
from hil_rig.run.control_server import ControlError

_COLOUR = {"green": "green", "yellow": "yellow", "red": "bold red"}
_SEV = {"info": "", "warning": "yellow", "error": "bold red", "security": "bold magenta"}


class Panel(Static):
    """A titled panel of label/value lines."""

    DEFAULT_CSS = ("Panel { border: round $primary; padding: 0 1; height: 100%; width: 1fr; "
                   "text-wrap: nowrap; text-overflow: ellipsis; }")

    def __init__(self, title: str, **kw: Any) -> None:
        super().__init__("", **kw)
        self.border_title = title

    def show(self, lines: list[Text]) -> None:
        # a line too long for the panel is cut short (…, the CSS), never wrapped onto the next
        self.update(Text("\n").join(lines))


class ConsoleApp(App):
    CSS = """
    Screen { layout: vertical; }
    #top { height: 7; }
    #mid { height: 8; }
    #attitude { width: 9fr; }
    #boards { width: 10fr; }
    #verdicts { width: 7fr; }
    #logs { height: 1fr; min-height: 4; }
    #events { width: 3fr; border: round $secondary; }
    #history { width: 2fr; border: round $secondary; }
    #status { height: 1; background: $boost; }
    #cmd { height: 3; }
    """
    BINDINGS = [
        Binding("f5", "toggle_pause", "pause/resume", priority=True),
        Binding("f6", "step", "step 1 s", priority=True),
        Binding("f7", "slower", "slower", priority=True),
        Binding("f8", "faster", "faster", priority=True),
        Binding("f9", "seek(-60)", "-60 s", priority=True, show=False),
        Binding("f10", "seek(60)", "+60 s", priority=True, show=False),
        Binding("escape", "disarm", "disarm", show=False),
        Binding("ctrl+q", "quit", "quit", priority=True),
    ]

    def __init__(self, source: Any, title: str = "orbit-hil console") -> None:
        super().__init__()
        self.source = source
        self.title = title
        self.channels = {c.name: c for c in hk_channels(source.boards)}
        self.stack = CommandStack()
        self.armed: Line | None = None
        self.hk: dict[str, Any] = {}
        self.status: dict[str, Any] = {}
        self.filter_words: list[str] = []
        self.procedure: list[Line] = []
        self.proc_wait: tuple[Line, float] | None = None
        self.event_lines: list[str] = []   # plain text of every event shown (tests read it)
        self.messages: list[str] = []      # what the console said (tests read it)
        self.history_lines: list[str] = []  # plain text of every command-history line (tests read it)
        #: seconds from an HK packet reaching the console to its values on screen
        self.latencies: list[float] = []
        self._rendered: tuple = ()
        self._verdicts: dict[str, str] = {}  # requirement -> its last state shown

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        with Horizontal(id="top"):
            yield Panel("orbit", id="orbit")
            yield Panel("power", id="power")
            yield Panel("thermal", id="thermal")
        with Horizontal(id="mid"):
            yield Panel("attitude", id="attitude")
            yield Panel("boards & jobs", id="boards")
            yield Panel("requirements", id="verdicts")
        with Horizontal(id="logs"):
            yield RichLog(id="events", max_lines=500, wrap=False, markup=False)
            yield RichLog(id="history", max_lines=200, wrap=False, markup=False)
        yield Input(placeholder="command (Tab/→ completes; 'help')", id="cmd",
                    suggester=SuggestFromList(completions(), case_sensitive=True))
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#events", RichLog).border_title = "events"
        self.query_one("#history", RichLog).border_title = "commands"
        self.query_one("#cmd", Input).focus()
        self.set_interval(0.1, self.pull)
        self.pull()

    # ---- the stream ------------------------------------------------------------------------
    def pull(self) -> None:
        f = self.source.take()
        for ev in f.events:
            self._event(ev)
            it = self.stack.on_event(ev, self.source.spi)
            if it is not None:
                self._history(it)
        for rep in f.reports:
            it = self.stack.on_report(rep, self.source.spi)
            if it is not None:
                self._history(it)
        for t_ns in f.hk_frames:
            it = self.stack.on_hk(t_ns)
            if it is not None:
                self._history(it)
        for n in f.notices:
            self.say(n)
        if f.reconnected:
            self._resend_head()
        if f.hk:
            self.hk = f.hk
        if f.status:
            self.status = f.status
            self._verdict_changes(f.status)
        self._send_next()
        self._advance_procedure()
        self.render_panels(force=False)
        if f.hk_arrived:
            self.refresh()
            now = time.monotonic()
            self.latencies.extend(now - w for w in f.hk_arrived)

    def _fmt(self, name: str, value: Any, fmt: str = "{:.2f}", scale: float = 1.0, offset: float = 0.0,
             unit: str = "") -> Text:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return Text("--", style="dim")
        ch = self.channels.get(name)
        state = ch.limit_state(float(value)) if ch is not None else "green"
        return Text(fmt.format(float(value) * scale + offset) + unit, style=_COLOUR[state])

    @staticmethod
    def _row(label: str, *values: Text | str) -> Text:
        t = Text(f"{label:<9}")
        for v in values:
            t.append_text(v if isinstance(v, Text) else Text(v))
        return t

    def render_panels(self, force: bool = True) -> None:
        key = (id(self.hk), id(self.status), self.armed)
        if not force and key == self._rendered:
            return  # nothing new since the last time
        self._rendered = key
        try:
            self._render_panels()
        except NoMatches:  # the screen is going away (the console quits)
            pass

    def _render_panels(self) -> None:
        hk, st = self.hk, self.status
        r, f = self._row, self._fmt
        t_s = st.get("t_s", hk.get("t_ns", 0) / NS)
        state = "ENDED" if st.get("ended") else "PAUSED" if st.get("paused") else "RUNNING"
        if st.get("ended") and "passed" in st:
            state += " PASSED" if st["passed"] else " FAILED"
        speed = st.get("speed")
        kind = "REPLAY" if not self.source.live else "LIVE"
        armed = f"  ARMED: {self.armed.text} (Enter executes, Esc disarms)" if self.armed else ""
        self.query_one("#status", Static).update(Text(
            f"{kind} t={t_s:8.0f} s  {state}  {st.get('clock', '')}"
            f"{'' if speed is None else f' x{speed:g}'}{armed}",
            style="bold reverse yellow" if self.armed else "bold"))
        sun = st.get("sunlit")
        tte = hk.get("t_to_eclipse_s")
        dur = hk.get("eclipse_duration_s")
        beta = st.get("beta_deg")
        self.query_one("#orbit", Panel).show([
            r("orbit", str(st.get("orbit", "--")), " β ", "--" if beta is None else f"{beta:.1f}°"),
            r("sun", Text("SUN" if sun else "ECLIPSE", style="yellow" if sun else "blue") if sun is not None
              else Text("--")),
            r("predict", "in eclipse" if hk.get("in_eclipse_pred") else "sunlit"),
            r("entry in", f("t_to_eclipse_s", tte, "{:.0f}", unit=" s")),
            r("exit in", f("", (tte or 0) + (dur or 0) if tte is not None and tte >= 0 else None, "{:.0f}",
                           unit=" s")),
        ])
        self.query_one("#power", Panel).show([
            r("SOC", f("soc", hk.get("soc"), "{:.1f}", 100, unit=" %")),
            r("bus", f("battery_v", hk.get("battery_v"), unit=" V"), " ", f("battery_i_a", hk.get("battery_i_a"),
                                                                            unit=" A")),
            r("gen/load", f("solar_power_w", hk.get("solar_power_w"), "{:.1f}"), " / ",
              f("load_power_w", hk.get("load_power_w"), "{:.1f}", unit=" W")),
            r("payload", f("payload_budget_w", hk.get("payload_budget_w"), "{:.1f}", unit=" W budget")),
            r("throttle", f("throttle_cmd", hk.get("throttle_cmd")), "  suspended" if hk.get("payload_suspended")
              else ""),
        ])
        self.query_one("#thermal", Panel).show([
            # the four thermal zones, each coloured against its own limits (26 columns: 80x24)
            r("bat/pay", f("temp_battery_k", hk.get("temp_battery_k"), "{:.1f}", offset=-ZERO_CELSIUS_K), "/",
              f("temp_payload_max_k", hk.get("temp_payload_max_k"), "{:.1f}", offset=-ZERO_CELSIUS_K,
                unit=" °C")),
            r("rad/str", f("temp_radiator_k", hk.get("temp_radiator_k"), "{:.1f}", offset=-ZERO_CELSIUS_K), "/",
              f("temp_structure_k", hk.get("temp_structure_k"), "{:.1f}", offset=-ZERO_CELSIUS_K, unit=" °C")),
            r("derate", f("thermal_derate", hk.get("thermal_derate"))),
            r("heaters", self._heaters(hk.get("heater_mask"), st.get("thermal_zones"))),
            r("fdir", f("fdir_actions", hk.get("fdir_actions"), "{:.0f}"), "  tc ",
              f("tc_accepted", hk.get("tc_accepted"), "{:.0f}"), "/", f("tc_rejected", hk.get("tc_rejected"), "{:.0f}"),
              " refused"),
        ])
        mode = hk.get("mode")
        mode_name = MODE_NAMES[int(mode)] if isinstance(mode, int | float) and 0 <= mode < len(MODE_NAMES) else "--"
        self.query_one("#attitude", Panel).show([
            r("mode", Text(mode_name, style="bold red" if mode_name == "SAFE" else "bold")),
            r("rate", f("rate_norm_rad_s", hk.get("rate_norm_rad_s"), "{:.4f}", unit=" rad/s")),
            r("pointing", f("pointing_error_rad", hk.get("pointing_error_rad"), "{:.2f}", 180 / math.pi,
                            unit=" deg")),
            r("ω rad/s", *[x for a in "xyz" for x in (f(f"wheel_{a}_rad_s", hk.get(f"wheel_{a}_rad_s"), "{:.0f}"),
                                                       " " if a != "z" else "")]),
            r("momentum", f("wheel_momentum_nms", hk.get("wheel_momentum_nms"), "{:.4f}", unit=" Nms")),
            r("watchdog", "ok" if hk.get("watchdog_ok", 1) else Text("EXPIRED", style="bold red")),
        ])
        lines = [r("jobs", f"{hk.get('jobs_completed', '--')} done {hk.get('jobs_running', '--')} run "
                           f"{hk.get('jobs_queued', '--')} queued {hk.get('jobs_failed', '--')} failed")]
        for b in self.source.boards:
            s = hk.get(f"board.{b}.state")
            sname = BOARD_STATES[int(s)] if isinstance(s, int | float) and 0 <= s < len(BOARD_STATES) else "--"
            # name, state (4 letters), temperature, power, throttle: 26 columns (80x24)
            lines.append(Text(f"{b[:6]:<7}").append_text(Text(f"{sname[:4]:<5}", style="red" if sname in (
                "FAULT", "ISOLATED") else "")).append_text(Text.assemble(
                    f(f"board.{b}.temp_k", hk.get(f"board.{b}.temp_k"), "{:.0f}", offset=-ZERO_CELSIUS_K,
                      unit="°C "),
                    f(f"board.{b}.power_w", hk.get(f"board.{b}.power_w"), "{:.1f}", unit="W "),
                    f(f"board.{b}.throttle", hk.get(f"board.{b}.throttle"), "{:.2f}"))))
        self.query_one("#boards", Panel).show(lines)
        self.query_one("#verdicts", Panel).show(self._verdict_lines(st))

    #: a requirement's state on screen: (label, style)
    _VERDICT = {"pass": ("ok", "green"), "fail": ("FAIL", "bold red"), "pending": ("..", "yellow")}

    def _verdict_lines(self, st: dict[str, Any]) -> list[Text]:
        """Each requirement's verdict: so far while the run goes (``ok`` would pass
        now, ``..`` pending, ``FAIL`` failed for good), final once it has ended."""
        out = []
        for v in st.get("verdicts") or []:
            state = v.get("state") or ("pass" if v.get("passed") else "fail")
            label, style = self._VERDICT.get(state, ("?", ""))
            if v.get("final"):
                label = "PASS" if state == "pass" else "FAIL"
            out.append(Text(f"{label:<4} ", style=style) + Text(str(v.get("name", ""))))
        return out or [Text("--", style="dim")]

    def _verdict_changes(self, st: dict[str, Any]) -> None:
        """A requirement whose verdict so far changed is an event in the log."""
        for v in st.get("verdicts") or []:
            state = v.get("state") or ("pass" if v.get("passed") else "fail")
            name = str(v.get("name", ""))
            if self._verdicts.get(name) != state:
                if name in self._verdicts or state != "pending":
                    self._event({"t_s": st.get("t_s", 0.0), "source": "judge", "name": f"verdict_{state}",
                                 "severity": {"fail": "error", "pending": "warning"}.get(state, "info"),
                                 "text": f"{name}: {v.get('detail', '')}"})
                self._verdicts[name] = state

    @staticmethod
    def _heaters(mask: Any, zones: Any) -> Text:
        """The zones whose heater is on (HK ``heater_mask``; names from the run's status)."""
        if not isinstance(mask, int | float) or mask != mask:
            return Text("--", style="dim")
        m = int(mask)
        if not m:
            return Text("all off")
        names = list(zones or [])
        on = [names[i] if i < len(names) else f"#{i}" for i in range(32) if m >> i & 1]
        return Text(" ".join(on), style="yellow")

    def _event(self, ev: dict[str, Any]) -> None:
        line = f"{ev['t_s']:9.1f} {ev['source']:<7} {ev['name']:<20} {ev['text']}"
        self.event_lines.append(line)
        if self.filter_words and not any(w in (ev["severity"], ev["source"], ev["name"])
                                         for w in self.filter_words):
            return
        self.query_one("#events", RichLog).write(Text(line, style=_SEV.get(ev["severity"], "")))

    def _history(self, it: Any) -> None:
        colour = {"completed": "green", "failed": "red", "rejected": "bold red", "accepted": "cyan",
                  "started": "cyan"}.get(it.state, "")
        arsn = "" if it.arsn is None else f" arsn {it.arsn}"
        detail = f": {it.detail}" if it.detail else ""
        if it.reports:  # the PUS service 1 report that brought this state
            detail += f" ({it.reports[-1]})"
        line = f"#{it.n} {it.state} {it.line.text}{arsn}{detail}"
        self.history_lines.append(line)
        try:
            self.query_one("#history", RichLog).write(Text(line, style=colour))
        except NoMatches:
            pass

    def say(self, text: str, style: str = "") -> None:
        self.messages.append(text)
        try:
            self.query_one("#history", RichLog).write(Text(text, style=style or "italic"))
        except NoMatches:  # an answer that arrived as the console closed
            pass

    # ---- commanding ---------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if not text:
            if self.armed is not None:
                self._execute(self.armed)
                self.armed = None
            return
        try:
            line = parse_line(text)
        except LineError as exc:
            self.say(f"refused: {exc}", "bold red")
            return
        if line.hazardous:
            if self.armed is not None and self.armed.text == line.text:
                self.armed = None
                self._execute(line)
            else:
                self.armed = line
                self.say(f"ARMED {line.text}: hazardous; Enter executes, Esc disarms", "bold yellow")
                self.query_one("#cmd", Input).value = ""
            self.render_panels()
            return
        self._execute(line)

    def action_disarm(self) -> None:
        if self.armed is not None:
            self.say(f"disarmed {self.armed.text}")
            self.armed = None
            self.render_panels()

    def _execute(self, line: Line) -> None:
        k = line.kind
        if k == "tc":
            if not self.source.live:
                self.say("refused: a replay takes no telecommands", "bold red")
                return
            it = self.stack.push(line)
            self._history(it)
            self._send_next()
        elif k == "inject":
            self._control("inject", fault=line.args)
        elif k in ("pause", "resume"):
            self._control(k)
        elif k == "step":
            self._control("step", duration=line.args["duration"])
        elif k == "speed":
            self._control("speed", speed=line.args["speed"])
        elif k == "run":
            try:
                self.procedure = parse_procedure(line.args["path"], self.source.boards)
            except LineError as exc:
                self.say(f"refused: {exc}", "bold red")
                return
            self.proc_wait = None
            self.say(f"procedure {line.args['path']}: {len(self.procedure)} steps")
        elif k == "filter":
            self.filter_words = list(line.args["words"])
            self.say(f"events filter: {' '.join(self.filter_words) or 'off'}")
        elif k == "help":
            self.say("telecommands: " + " ".join(sorted(c.split()[0] for c in completions() if "=" in c
                                                       or c.split()[0] in ("noop",))))
            self.say("also: inject KIND k=v, pause, resume, step [D], speed X, run FILE, filter WORDS, quit")
        elif k == "quit":
            self.exit()

    def _control(self, op: str, **kw: Any) -> None:
        def work() -> None:
            try:
                res = self.source.request(op, **kw)
            except ControlError as exc:
                self.call_from_thread(self.say, f"{op} refused: {exc}", "bold red")
                return
            if op == "inject":
                self.call_from_thread(self.say, f"injected: {'; '.join(res)}")
            elif isinstance(res, dict):
                self.call_from_thread(self._set_status, res)

        self.run_worker(work, thread=True, exclusive=False, group="control")

    def _set_status(self, st: dict[str, Any]) -> None:
        self.status = st
        self.render_panels()

    def _send_next(self) -> None:
        if not self.source.live:
            return
        it = self.stack.next_to_send()
        if it is None:
            return
        try:
            it.arsn, it.packet = self.source.send_tc(it.line.name, it.line.args)
            it.state, it.t_sent, it.acked = "sent", time.monotonic(), True
        except ControlError as exc:
            it.state, it.detail = "unsent", str(exc)
        self._history(it)

    def _resend_head(self) -> None:
        """After a reconnect: the TC in flight again, the same bytes (at most once)."""
        h = self.stack.head
        if h is None or h.state != "sent" or not h.packet:
            return
        try:
            self.source.resend(h.packet)
            self.say(f"#{h.n} re-sent after the reconnect (arsn {h.arsn}: executes at most once)")
        except ControlError as exc:
            self.say(f"#{h.n} not re-sent: {exc}", "bold red")

    def _advance_procedure(self) -> None:
        while self.procedure:
            if self.proc_wait is not None:
                w, since = self.proc_wait
                t_s = self.hk.get("t_ns", 0) / NS
                if w.name == "ack" and not self.stack.idle:
                    return
                if w.name == "time" and t_s < since + w.args["s"]:
                    return
                if w.name == "tm" and not condition_met(w, self.hk):
                    return
                self.proc_wait = None
            line = self.procedure.pop(0)
            self.say(f"procedure: {line.text}")
            if line.kind == "wait":
                self.proc_wait = (line, self.hk.get("t_ns", 0) / NS)
            else:
                self._execute(line)
            if not self.procedure:
                self.say("procedure done")

    # ---- keys ------------------------------------------------------------------------------------
    def action_toggle_pause(self) -> None:
        self._control("resume" if self.status.get("paused") else "pause")

    def action_step(self) -> None:
        self._control("step", duration="1 s")

    def action_slower(self) -> None:
        self._speed(0.5)

    def action_faster(self) -> None:
        self._speed(2.0)

    def _speed(self, factor: float) -> None:
        sp = self.status.get("speed")
        if sp is None:
            self.say("speed: this run is in virtual time (as fast as possible)", "bold red")
            return
        self._control("speed", speed=float(sp) * factor)

    def action_seek(self, delta_s: float) -> None:
        if self.source.live:
            self.say("seek: only in a replay")
            return
        self.source.request("seek", delta_s=float(delta_s))
        self.pull()

    def on_unmount(self) -> None:
        self.source.close()
