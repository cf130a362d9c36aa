"""The rig's control endpoint: a live run driven from outside (docs/console.md).

A run that can be attached to (``hil run --listen`` or ``--console``) opens two
loopback endpoints, both under the run's key:

- the flight software's ground port (:mod:`flight_sw.ground`): authenticated
  CCSDS TCs up, housekeeping and events down;
- this control endpoint, built on the run's public control API: status, faults,
  pause, resume, step, speed, stop, and the rig's own events.

Three parts:

- :class:`LiveRun` drives a started :class:`hil_rig.run.Run` from one thread, one
  simulated second at a time, and does what other threads ask between seconds,
  in that thread (the run's archive belongs to it). While paused it waits;
  ``step`` advances a paused run by exactly its duration.
- :class:`ControlServer`: line-delimited JSON over TCP on 127.0.0.1.
- :class:`ControlClient`: the console's side of it.

The protocol (one JSON object per line, UTF-8, at most ``MAX_LINE`` bytes):

1. On connect the server sends ``{"hello": PROTOCOL, "nonce": <32 hex digits>}``,
   a fresh random nonce for this connection.
2. Each request is ``{"seq": n, "req": {"op": ..., ...}, "mac": <hex>}`` where
   ``n`` starts at 1 and increases by one per request on the connection, and
   ``mac`` is HMAC-SHA256 under the key over ``nonce || n (u64, big-endian) ||
   canonical JSON of req`` (``json.dumps(req, sort_keys=True, separators=(",",
   ":"))``). The nonce makes a request recorded on one connection useless on
   another; ``seq`` makes it useless twice on the same one.
3. The reply is ``{"seq": n, "ok": true, "result": ...}`` or ``{"seq": n, "ok":
   false, "error": "..."}`` with ``mac`` over ``nonce || n || canonical JSON of
   the reply without mac``, so the client knows the run answered.

A request with a wrong MAC gets ``{"ok": false, "error": "refused"}`` and the
connection is closed: the client learns nothing else. Each such try is counted
(``wrong_key``) and written into the run's event log as ``control_auth_failed``;
a line that is not a request (not JSON, too long, no ``seq``) is counted as
``malformed``, logged as ``control_malformed``, and closes the connection too.
The run goes on either way.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import hmac
import json
import os
import pathlib
import queue
import secrets
import socket
import sqlite3
import struct
import threading
from collections.abc import Callable
from typing import Any

from hil_rig.constants import NS_PER_S as NS
from hil_rig.run.errors import RunError

PROTOCOL = "orbit-hil-control/1"
MAX_LINE = 65536
#: in the run directory: where the endpoints are (JSON) and the key the run made
ENDPOINTS_FILE = "endpoints.json"
KEY_FILE = "tc.key"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ControlError(Exception):
    """A control request refused, or the endpoint unreachable; the text says which."""


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def request_mac(key: bytes, nonce: bytes, seq: int, body: Any) -> str:
    return hmac.new(key, nonce + struct.pack(">Q", seq) + canonical(body), hashlib.sha256).hexdigest()


# ---- the key and the endpoints file -------------------------------------------------------
def run_key(run_dir: pathlib.Path, key_file: str | os.PathLike[str] | None) -> tuple[bytes, pathlib.Path]:
    """The run's key: read from ``key_file`` (which must be mode 0600), or a fresh
    256-bit key written into ``run_dir/tc.key`` with mode 0600. Raises RunError."""
    from flight_sw.tc import KeyFileError, load_key, write_key

    if key_file is not None:
        try:
            return load_key(key_file), pathlib.Path(key_file).resolve()
        except KeyFileError as exc:
            raise RunError(f"--key-file: {exc}") from None
    path = run_dir / KEY_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if path.exists():
            return load_key(path), path.resolve()
        return write_key(path), path.resolve()
    except KeyFileError as exc:
        raise RunError(str(exc)) from None
    except OSError as exc:
        raise RunError(f"{path}: {exc.strerror or exc}") from None


@dataclasses.dataclass
class Endpoints:
    """Where a live run listens; written as ``endpoints.json`` into its run directory."""

    host: str
    ground_port: int
    control_port: int
    key_file: str
    boards: list[str]
    scenario: str
    pid: int

    def write(self, run_dir: pathlib.Path) -> pathlib.Path:
        path = run_dir / ENDPOINTS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, run_dir: str | os.PathLike[str]) -> Endpoints:
        path = pathlib.Path(run_dir) / ENDPOINTS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
        except OSError as exc:
            raise ControlError(f"{path}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ControlError(f"{path}: not an endpoints file ({exc})") from None


# ---- the driver ---------------------------------------------------------------------------
class LiveRun:
    """Drives a started run a second at a time in the thread that calls :meth:`loop`;
    :meth:`call` hands any control call to that thread (done between two seconds)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future]] = queue.SimpleQueue()
        self.paused = False
        self.result: Any = None
        self.ended = threading.Event()
        self.end_reason = ""

    # control calls: only ever in the loop's thread (through call())
    def pause(self) -> None:
        if not self.paused:
            self.run.pause()
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self.run.resume()
            self.paused = False

    def step(self, duration: int | str) -> float:
        """Advance a paused run by ``duration`` (ns or text such as '1 s'); stays paused."""
        if not self.paused:
            raise RunError("step: the run is running; pause it first")
        self.run.resume()
        try:
            self.run.step(duration)
        finally:
            self.run.pause()
        return self.run.t_ns / NS

    def call(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Do ``fn`` in the loop's thread between two seconds and return its result."""
        if self.ended.is_set():
            raise RunError(f"the run has ended ({self.end_reason})")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._requests.put((fn, fut))
        if self.ended.is_set():  # ended meanwhile: nobody will serve it
            self._serve(block=False)
        return fut.result(timeout)

    def _serve(self, block: bool) -> None:
        while True:
            try:
                fn, fut = self._requests.get(timeout=0.05) if block else self._requests.get_nowait()
            except queue.Empty:
                return
            block = False
            if not fut.set_running_or_notify_cancel():
                continue
            if self.ended.is_set():
                fut.set_exception(RunError(f"the run has ended ({self.end_reason})"))
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)

    def loop(self) -> Any:
        """Run to the end (or a stop), then ``finish()``; returns the RunResult."""
        run = self.run
        end = run.duration_ns
        try:
            while run.stop_reason is None and run.t_ns < end:
                self._serve(block=self.paused)
                if self.paused or run.stop_reason is not None:
                    continue
                t = run.t_ns
                run.run_until(min((t // NS + 1) * NS, end))
        except KeyboardInterrupt:
            run.stop("interrupted")
        except RunError as exc:
            run.stop(f"error: {exc}")
        run.resume()
        self.paused = False
        try:
            self.result = run.finish()
        finally:
            self.end_reason = "finished" if run.stop_reason is None else str(run.stop_reason)
            self.ended.set()
            self._serve(block=False)
        return self.result


# ---- the server ---------------------------------------------------------------------------
class ControlServer:
    """The control endpoint of one live run (see the module's doc for the protocol)."""

    def __init__(self, live: LiveRun, key: bytes, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"control endpoint host {host!r}: only loopback is allowed")
        self.live = live
        self.run = live.run
        self._key = key
        try:
            self._srv = socket.create_server((host, port))
        except OSError as exc:
            raise RunError(f"control endpoint {host}:{port}: {exc.strerror or exc}") from None
        self._srv.settimeout(0.2)
        self.address = self._srv.getsockname()[:2]
        self.counts = {"connections": 0, "requests": 0, "wrong_key": 0, "malformed": 0}
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="control-endpoint", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.address[1])

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.counts["connections"] += 1
                self._conns.append(conn)
            threading.Thread(target=self._client, args=(conn,), name="control-client", daemon=True).start()

    def _count(self, what: str, detail: str) -> None:
        with self._lock:
            self.counts[what] += 1
            n = self.counts[what]
        kind = "control_auth_failed" if what == "wrong_key" else "control_malformed"
        try:
            self.live.call(lambda: self.run.log_event("control", kind, f"{detail} (try {n})"), timeout=10)
        except Exception:  # noqa: BLE001 - the run has ended: the count is still kept
            pass

    def _client(self, conn: socket.socket) -> None:
        nonce = secrets.token_bytes(16)
        f = conn.makefile("rb")
        try:
            conn.sendall(canonical({"hello": PROTOCOL, "nonce": nonce.hex()}) + b"\n")
            last = 0
            while not self._stop.is_set():
                line = f.readline(MAX_LINE + 1)
                if not line:
                    return
                try:
                    if len(line) > MAX_LINE or not line.endswith(b"\n"):
                        raise ValueError(f"a line longer than {MAX_LINE} bytes")
                    msg = json.loads(line)
                    if not isinstance(msg, dict):
                        raise ValueError("not a JSON object")
                    seq, req, mac = msg["seq"], msg["req"], msg["mac"]
                    if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(mac, str) \
                            or not isinstance(req, dict):
                        raise ValueError("seq, req or mac of the wrong type")
                except (ValueError, KeyError) as exc:
                    self._count("malformed", f"refused a malformed request: {str(exc)[:80]}")
                    conn.sendall(canonical({"ok": False, "error": "malformed request"}) + b"\n")
                    return
                if not hmac.compare_digest(mac, request_mac(self._key, nonce, seq, req)):
                    self._count("wrong_key", "refused a request with a wrong MAC (wrong key or forged)")
                    conn.sendall(canonical({"ok": False, "error": "refused"}) + b"\n")
                    return
                if seq != last + 1:
                    self._count("wrong_key", f"refused a replayed or out-of-order request (seq {seq} after {last})")
                    conn.sendall(canonical({"ok": False, "error": "refused"}) + b"\n")
                    return
                last = seq
                with self._lock:
                    self.counts["requests"] += 1
                try:
                    reply = {"seq": seq, "ok": True, "result": self._do(req)}
                except (RunError, ControlError, ValueError, TypeError) as exc:
                    reply = {"seq": seq, "ok": False, "error": str(exc)}
                except concurrent.futures.TimeoutError:
                    reply = {"seq": seq, "ok": False, "error": "the run did not answer in time"}
                except Exception as exc:  # noqa: BLE001 - an answer, never a dead connection
                    reply = {"seq": seq, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
                reply = json.loads(json.dumps(reply, default=_jsonable))  # what the client will see
                reply["mac"] = request_mac(self._key, nonce, seq, reply)
                conn.sendall(canonical(reply) + b"\n")
        except OSError:
            return
        finally:
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            try:
                f.close()
                conn.close()
            except OSError:
                pass

    def _do(self, req: dict[str, Any]) -> Any:
        op = req.get("op")
        live, run = self.live, self.run
        if op == "ping":
            return PROTOCOL
        if op == "status":
            return self.status()
        if op == "events":
            return self.events(int(req.get("after", 0)))
        if op == "inject":
            fault = req.get("fault")
            if not isinstance(fault, dict):
                raise ControlError("inject: 'fault' must be a table like a scenario file's [[fault]]")
            acts = live.call(lambda: run.inject(fault))
            return [a.describe() for a in acts]
        if op == "command":
            name, args = req.get("name"), req.get("args", {})
            if not isinstance(name, str) or not isinstance(args, dict):
                raise ControlError("command: give 'name' (text) and 'args' (a table)")
            return live.call(lambda: run.command(name, **args))
        if op == "pause":
            live.call(live.pause)
            return self.status()
        if op == "resume":
            live.call(live.resume)
            return self.status()
        if op == "step":
            live.call(lambda: live.step(req.get("duration", NS)))
            return self.status()
        if op == "speed":
            live.call(lambda: run.set_speed(req.get("speed")))
            return self.status()
        if op == "stop":
            run.stop(str(req.get("reason", "stopped from the control endpoint")))
            return "stopping"
        raise ControlError(f"unknown op {op!r}; known: command, events, inject, pause, ping, resume, "
                           "speed, status, step, stop")

    def status(self) -> dict[str, Any]:
        """The run's status() with the endpoint's counts, the ground SA's last ARSN
        and whether the run has ended."""
        from flight_sw.tc import SPI_GROUND

        live, run = self.live, self.run
        if live.ended.is_set():
            s = run.status()
        else:
            s = live.call(run.status, timeout=30)
        s["paused"] = live.paused
        s["ended"] = live.ended.is_set()
        s["end_reason"] = live.end_reason
        if live.result is not None:
            s["passed"] = bool(live.result.passed)
            s["verdicts"] = [{"name": v.name, "kind": v.kind, "passed": bool(v.passed),
                              "state": "pass" if v.passed else "fail", "final": True, "detail": v.detail}
                             for v in live.result.verdicts]
        s["ground_last_arsn"] = run.fsw.verifier.last_by_spi.get(SPI_GROUND, 0)
        with self._lock:
            s["control"] = dict(self.counts)
        s["boards"] = s.get("boards") or {n: "OFF" for n in run.boards}
        return s

    def events(self, after: int) -> list[list[Any]]:
        """The rig's events (not the flight software's: those come down the ground
        port) after archive sequence number ``after``: [seq, t_s, source, kind, detail]."""
        from hil_rig.archive import ARCHIVE_NAME

        path = self.run.run_dir / ARCHIVE_NAME
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                rows = db.execute("SELECT seq, t_ns, source, kind, detail FROM events WHERE seq > ? "
                                  "AND source != 'fsw' ORDER BY seq LIMIT 500", (after,)).fetchall()
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise ControlError(f"{path}: {exc}") from None
        return [[s, t / NS, src, k, d] for s, t, src, k, d in rows]

    def close(self) -> None:
        self._stop.set()
        try:
            self._srv.close()
        except OSError:
            pass
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=2)


def _jsonable(x: Any) -> Any:
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


# ---- the client ---------------------------------------------------------------------------
class ControlClient:
    """One authenticated connection to a control endpoint; :meth:`request` is thread-safe."""

    def __init__(self, host: str, port: int, key: bytes, timeout_s: float = 30.0) -> None:
        self._key = key
        self._lock = threading.Lock()
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            raise ControlError(f"control endpoint {host}:{port}: {exc.strerror or exc}") from None
        self._f = self._sock.makefile("rb")
        hello = self._read()
        if hello.get("hello") != PROTOCOL or not isinstance(hello.get("nonce"), str):
            raise ControlError(f"control endpoint {host}:{port}: not an orbit-hil control endpoint")
        self._nonce = bytes.fromhex(hello["nonce"])
        self._seq = 0

    def _read(self) -> dict[str, Any]:
        try:
            line = self._f.readline(MAX_LINE + 1)
        except (OSError, ValueError) as exc:  # ValueError: closed here meanwhile
            raise ControlError(f"control endpoint: {getattr(exc, 'strerror', None) or exc}") from None
        if not line:
            raise ControlError("control endpoint: connection closed (the run has ended or refused us)")
        try:
            return json.loads(line)
        except ValueError:
            raise ControlError("control endpoint: an answer that is not JSON") from None

    def request(self, op: str, **kw: Any) -> Any:
        req = {"op": op, **kw}
        with self._lock:
            self._seq += 1
            seq = self._seq
            msg = {"seq": seq, "req": req, "mac": request_mac(self._key, self._nonce, seq, req)}
            try:
                self._sock.sendall(canonical(msg) + b"\n")
            except (OSError, ValueError) as exc:
                raise ControlError(f"control endpoint: {exc.strerror or exc}") from None
            reply = self._read()
        mac = reply.pop("mac", None)
        if mac is None or reply.get("seq") != seq or \
                not hmac.compare_digest(mac, request_mac(self._key, self._nonce, seq, reply)):
            raise ControlError(f"control endpoint: {reply.get('error', 'an unauthenticated answer')}")
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error")))
        return reply.get("result")

    def close(self) -> None:
        try:
            self._f.close()
            self._sock.close()
        except OSError:
            pass


# ---- a run that can be attached to -----------------------------------------------------------
class Hosted:
    """A run that can be attached to: :meth:`serve` starts it, opens the control
    endpoint beside its ground port, writes ``endpoints.json`` and drives it to its
    end, all in the calling thread (the run's archive belongs to the thread that
    started it); :meth:`start_thread` does that in a thread of its own."""

    def __init__(self, run: Any, key: bytes, key_path: pathlib.Path, *, paused: bool = False) -> None:
        self.run = run
        self.key = key
        self.key_path = key_path
        self.start_paused = paused
        self.live = LiveRun(run)
        self.server: ControlServer | None = None
        self.endpoints: Endpoints | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def open(self) -> None:
        """Start the run and open the endpoints (in the thread that will drive it)."""
        run = self.run
        run.start()
        ground = run.fsw.ground
        if ground is None:
            raise RunError("the run has no ground port (RunOptions.ground_port is None)")
        if self.start_paused:
            self.live.pause()
        self.server = ControlServer(self.live, self.key)
        self.endpoints = Endpoints(host="127.0.0.1", ground_port=ground.port, control_port=self.server.port,
                                   key_file=str(self.key_path), boards=list(run.boards),
                                   scenario=run.scenario.name, pid=os.getpid())
        self.endpoints.write(run.run_dir)

    def serve(self) -> Any:
        """open(), then drive the run to its end; returns its RunResult."""
        try:
            self.open()
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            raise
        self.ready.set()
        return self.live.loop()

    def start_thread(self) -> None:
        """serve() in a thread; returns once the endpoints are open (or raises why not)."""

        def _target() -> None:
            try:
                self.serve()
            except BaseException as exc:  # noqa: BLE001 - kept for the caller
                if self.error is None:
                    self.error = exc
            finally:
                self.run.close()

        self.thread = threading.Thread(target=_target, name="run-loop", daemon=True)
        self.thread.start()
        self.ready.wait()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop the run if it still goes, wait for its thread, close the endpoint."""
        if self.thread is not None and self.thread.is_alive():
            self.run.stop("the console quit")
            self.thread.join()
        if self.server is not None:
            self.server.close()
        try:
            (self.run.run_dir / ENDPOINTS_FILE).unlink()
        except OSError:
            pass
