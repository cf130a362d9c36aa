"""The telemetry archive of a run: one SQLite file (schema in docs/archive.md).

- ``telemetry``: one row per simulated second, one column per channel; the
  ``channels`` table names each column's unit and meaning;
- ``payload``: one row per board per simulated second;
- ``events``: the event log (mode changes, faults, FDIR steps, verdicts...);
- ``enums``: the names of the integer codes of enumerated channels (flight mode,
  EPS mode), so that a reader sees ``COMPUTE``, not ``4``;
- ``meta``: scenario name, seed, epoch, versions. No wall-clock values live in
  any table, so the same scenario and seed in virtual time give the same rows;
  wall-clock figures go to ``summary.json`` only.

The file is in WAL mode. The run commits after a simulated second once
``COMMIT_EVERY_S`` (50 ms) of wall time have passed since its last commit, and
whenever its loop hands control back (a step's end, a pause, the end), so a crash
(or SIGKILL) loses at most the last 50 ms of work: the last simulated second at
speed 1, the last few dozen in virtual time. Rows are buffered by the caller; the
inserts and COMMITs run on a writer thread of the archive's own (at the normal
scheduling policy), so the run loop only hands a batch over. Checkpoints
(copying the WAL back into the file, with its fsyncs) run on another thread
every ``CHECKPOINT_EVERY`` commits, so the writer never waits for the disk.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> a = Archive(d / "telemetry.sqlite", [Column("soc", "1", "battery state of charge")])
>>> a.telemetry(0, [0.9]); a.event(0, "rig", "start", "hello"); a.commit(); a.close()
>>> run = load_run(d)
>>> float(run["telemetry"]["soc"][0]), str(run["events"]["kind"][0])
(0.9, 'start')
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

ARCHIVE_NAME = "telemetry.sqlite"
SCHEMA_VERSION = 2  # 2: the enums table, payload's throttle, the link_stats table

_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")
CHECKPOINT_EVERY = 250  # commits (about 1000 WAL pages, SQLite's own default) per checkpoint
#: :meth:`Archive.commit_soon` commits at most this often (wall clock): at speed 1 every
#: simulated second, in virtual time every few dozen (their rows go in as one batch)
COMMIT_EVERY_S = 0.05


class _Checkpointer:
    """A thread with its own connection that checkpoints the WAL when asked (PASSIVE:
    it never blocks the writer; sqlite3 releases the GIL while it works)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._go = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"checkpoint {path.name}", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._go.set()

    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            while True:
                self._go.wait()
                self._go.clear()
                stop = self._stop  # read before: a close() during this checkpoint gets one more
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass  # a full disk: the rows stay in the WAL; the writer reports the failure
                if stop:
                    return
        finally:
            db.close()

    def close(self) -> None:
        """A last checkpoint, then the thread ends."""
        self._stop = True
        self._go.set()
        self._thread.join()


@dataclasses.dataclass(frozen=True)
class Column:
    """One telemetry column: its name (SQL identifier, carries its unit), unit, meaning."""

    name: str
    unit: str
    description: str
    kind: str = "REAL"  # REAL or INTEGER
    #: an enumerated channel: the name of each integer code, in code order (0, 1, ...)
    names: tuple[str, ...] = ()


class ArchiveError(RuntimeError):
    pass


_PAYLOAD_SQL = "INSERT INTO payload VALUES (?, ?, ?, ?, ?, ?, ?)"
_LINK_SQL = "INSERT INTO link_stats VALUES (?, ?, ?, ?)"
_EVENT_SQL = "INSERT INTO events (t_ns, source, kind, detail) VALUES (?, ?, ?, ?)"
_META_SQL = "INSERT OR REPLACE INTO meta VALUES (?, ?)"


def _normal_policy() -> None:
    """The calling thread at the normal scheduling policy. A new thread gets its
    creator's policy, unless the creator set ``SCHED_RESET_ON_FORK`` (the run loop's
    real-time block does; ``chrt`` without ``-R`` does not): a real-time writer
    would compete with the boards' agents for the cores."""
    try:
        if os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK in (os.SCHED_FIFO, os.SCHED_RR):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):  # no sched_* (not Linux)
        pass


class Archive:
    """Writer. Rows are buffered in the caller's thread and handed over, as one batch,
    to the archive's writer thread, which inserts them and commits (sqlite3 releases
    the GIL while it steps and commits). :meth:`commit` hands over and waits;
    :meth:`commit_soon` hands over without waiting once ``COMMIT_EVERY_S`` of wall
    time have passed since the last hand-over. A write the thread could not do (a
    full disk) makes the next call raise ArchiveError, and every one after it.

    Calls come from one thread at a time (a run is started in one thread and may be
    stepped in another, a console's; the run serializes its calls)."""

    def __init__(self, path: str | pathlib.Path, channels: Sequence[Column],
                 meta: Mapping[str, object] | None = None) -> None:
        self.path = pathlib.Path(path)
        if self.path.exists():
            raise ArchiveError(f"{self.path}: archive exists already; runs never overwrite")
        for c in channels:
            if not _IDENT.match(c.name) or c.name == "t_ns":
                raise ArchiveError(f"channel name {c.name!r} is not a plain identifier")
            if c.kind not in ("REAL", "INTEGER"):
                raise ArchiveError(f"channel {c.name}: kind must be REAL or INTEGER")
        self.channels = list(channels)
        # used here, then by the writer thread alone, then by close() once the writer ended
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does it
        self._commits = 0  # by the writer thread
        self._last_commit = 0.0  # time.monotonic() of the last hand-over
        # rows not yet handed over: telemetry, payload, and the other inserts in call order
        self._tm_rows: list[tuple] = []
        self._pl_rows: list[tuple] = []
        self._ops: list[tuple[str, tuple]] = []
        self._dirty = False  # something written since the last hand-over
        self._handed = 0  # batches handed over; of them, _written are done (committed or refused)
        self._written = 0
        self._checkpointer: _Checkpointer | None = None
        #: why writing stopped (a full disk): every later write raises ArchiveError
        self.failed: str | None = None
        cols = "".join(f", {c.name} {c.kind}" for c in self.channels)
        self.db.executescript(
            f"""
            BEGIN;
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE channels (name TEXT PRIMARY KEY, unit TEXT NOT NULL,
                                   description TEXT NOT NULL, position INTEGER NOT NULL);
            CREATE TABLE telemetry (t_ns INTEGER PRIMARY KEY{cols});
            CREATE TABLE payload (t_ns INTEGER NOT NULL, board TEXT NOT NULL,
                                  state TEXT NOT NULL, power_w REAL, temp_k REAL,
                                  jobs_done INTEGER, throttle REAL,
                                  PRIMARY KEY (t_ns, board)) WITHOUT ROWID;
            CREATE TABLE link_stats (t_ns INTEGER NOT NULL, board TEXT NOT NULL,
                                     retries INTEGER NOT NULL, errors INTEGER NOT NULL,
                                     PRIMARY KEY (t_ns, board)) WITHOUT ROWID;
            CREATE TABLE events (seq INTEGER PRIMARY KEY, t_ns INTEGER NOT NULL,
                                 source TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
            CREATE INDEX events_t ON events (t_ns);
            CREATE TABLE enums (channel TEXT NOT NULL, value INTEGER NOT NULL, name TEXT NOT NULL,
                                PRIMARY KEY (channel, value));
            COMMIT;
            """
        )
        self.db.execute("BEGIN")
        self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        for k, v in sorted((meta or {}).items()):
            self.db.execute("INSERT INTO meta VALUES (?, ?)", (k, str(v)))
        self.db.executemany(
            "INSERT INTO channels VALUES (?, ?, ?, ?)",
            [(c.name, c.unit, c.description, i) for i, c in enumerate(self.channels)],
        )
        self.db.executemany("INSERT INTO enums VALUES (?, ?, ?)",
                            [(c.name, v, n) for c in self.channels for v, n in enumerate(c.names)])
        self.db.execute("COMMIT")
        self._tm_sql = (
            f"INSERT INTO telemetry VALUES (?{', ?' * len(self.channels)})"
        )
        self._queue: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name=f"archive writer {self.path.name}",
                                        daemon=True)
        self._writer.start()

    def telemetry(self, t_ns: int, values: Sequence[float | int | None]) -> None:
        """One telemetry row at ``t_ns`` (values in channel order)."""
        if len(values) != len(self.channels):
            raise ArchiveError(f"expected {len(self.channels)} values, got {len(values)}")
        if self.failed is not None:
            raise ArchiveError(self.failed)
        self._tm_rows.append((int(t_ns), *values))
        self._dirty = True

    def payload(self, t_ns: int, board: str, state: str, power_w: float | None,
                temp_k: float | None, jobs_done: int | None, throttle: float | None = None) -> None:
        if self.failed is not None:
            raise ArchiveError(self.failed)
        self._pl_rows.append((int(t_ns), board, state, power_w, temp_k, jobs_done, throttle))
        self._dirty = True

    def link_stats(self, t_ns: int, board: str, retries: int, errors: int) -> None:
        """A board link's counts since the start, at ``t_ns`` (written when they change).
        They follow the wall clock (a reply late under load is retried): the one table
        outside the determinism guarantee (``REPRODUCIBLE_TABLES``)."""
        self._insert(_LINK_SQL, (int(t_ns), board, retries, errors))

    def event(self, t_ns: int, source: str, kind: str, detail: str = "") -> None:
        self._insert(_EVENT_SQL, (int(t_ns), source, kind, detail))

    def set_meta(self, key: str, value: object) -> None:
        self._insert(_META_SQL, (key, str(value)))

    def _insert(self, sql: str, params: tuple) -> None:
        if self.failed is not None:
            raise ArchiveError(self.failed)
        self._ops.append((sql, params))
        self._dirty = True

    def _hand_over(self, done: threading.Event | None) -> None:
        """Give the rows buffered so far to the writer thread, which commits them in
        the order handed over and then sets ``done``."""
        if self.failed is not None:
            raise ArchiveError(self.failed)
        if self.db is None:
            raise ArchiveError(f"{self.path}: the archive is closed")
        self._last_commit = time.monotonic()
        if not self._dirty and done is None:
            return
        batch = (self._tm_rows, self._pl_rows, self._ops, done)
        self._tm_rows, self._pl_rows, self._ops = [], [], []
        self._dirty = False
        self._handed += 1
        self._queue.put(batch)

    def _write_loop(self) -> None:
        """The writer thread: each batch handed over goes in as one transaction, in the
        order handed over (so a failure rolls back that batch only). After a failure
        the rest is refused, not written."""
        _normal_policy()
        while (batch := self._queue.get()) is not None:
            tm_rows, pl_rows, ops, done = batch
            try:
                if self.failed is None and (tm_rows or pl_rows or ops):
                    self._write(tm_rows, pl_rows, ops)
            except Exception as exc:  # noqa: BLE001 - a full disk, an I/O error, a value SQLite refused
                self._fail(exc)
            finally:
                self._written += 1
                if done is not None:
                    done.set()

    def _write(self, tm_rows: list[tuple], pl_rows: list[tuple], ops: list[tuple[str, tuple]]) -> None:
        db = self.db
        db.execute("BEGIN")
        if tm_rows:
            db.executemany(self._tm_sql, tm_rows)
        if pl_rows:
            db.executemany(_PAYLOAD_SQL, pl_rows)
        for sql, params in ops:
            db.execute(sql, params)
        db.execute("COMMIT")
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0:
            if self._checkpointer is None:  # started here: at the writer's normal policy
                self._checkpointer = _Checkpointer(self.path)
            self._checkpointer.request()

    def _fail(self, exc: Exception) -> None:
        """A write failed (a full disk, an I/O error): the open transaction is rolled back,
        so the archive ends at the last commit, and every later write is refused."""
        full = getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"
        why = f"the disk is full ({exc})" if full else str(exc)
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolled back already
        self.failed = (f"{self.path}: cannot write the archive: {why}; it holds every "
                       "second committed before")

    def commit(self) -> None:
        """End the transaction: when this returns, every row written so far is in the
        file (ArchiveError if it could not be written)."""
        done = threading.Event()
        self._hand_over(done)
        done.wait()
        if self.failed is not None:
            raise ArchiveError(self.failed)

    @property
    def dirty(self) -> bool:
        """Something was written that is not committed yet."""
        return self._dirty or self._written < self._handed

    def commit_soon(self) -> None:
        """Hand the rows written so far to the writer thread, which commits them, if
        ``COMMIT_EVERY_S`` of wall time have passed since the last hand-over (the run
        calls it every simulated second, and commits at once whenever its loop hands
        control back: a step's end, a pause, the end of the run)."""
        if time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
            self._hand_over(None)

    def close(self) -> None:
        """Commit what is left, wait for the writer thread to end, fold the WAL back
        into the file. ArchiveError if a write failed that no call has reported yet."""
        if self.db is None:
            return
        unreported = self.failed is None
        try:
            if self.failed is None and self._dirty:
                self._hand_over(None)
        finally:
            self._queue.put(None)
            self._writer.join()
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
            try:
                # Fold the WAL back into the main file so the archive is one file at rest;
                # on a full disk the committed rows stay in the WAL, where SQLite reads them.
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self.db.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.OperationalError:
                pass
            finally:
                self.db.close()
                self.db = None  # type: ignore[assignment]
        if unreported and self.failed is not None:
            raise ArchiveError(self.failed)

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- reading -------------------------------------------------------------------------
TABLES = ("meta", "channels", "telemetry", "payload", "events", "enums", "link_stats")
#: the tables that the same scenario and seed reproduce bit for bit in virtual time
#: (link_stats counts retransmissions, which follow the wall clock)
REPRODUCIBLE_TABLES = tuple(t for t in TABLES if t != "link_stats")


class RunArchive(dict):
    """``load_run`` result: table name -> numpy structured array, plus ``meta`` (a dict)
    under ``run.meta`` and the directory under ``run.path``."""

    path: pathlib.Path
    meta: dict[str, str]

    def enum_names(self, channel: str) -> dict[int, str]:
        """The names of an enumerated channel's codes (the ``enums`` table), e.g.
        ``run.enum_names("fsw_mode")[4] == "COMPUTE"``; {} for another channel."""
        e = self["enums"]
        if not len(e):
            return {}
        sel = e[e["channel"] == channel]
        return {int(v): str(n) for v, n in zip(sel["value"], sel["name"], strict=True)}

    def to_pandas(self) -> dict[str, Any]:
        """Table name -> pandas DataFrame (pandas is optional; ImportError names it)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("RunArchive.to_pandas() needs pandas: python -m pip install pandas") from None
        return {name: pd.DataFrame.from_records(arr) for name, arr in self.items()}


def _structured(cur: sqlite3.Cursor) -> np.ndarray:
    rows = cur.fetchall()
    names = [d[0] for d in cur.description]
    fields = []
    for j, name in enumerate(names):
        col = [r[j] for r in rows]
        kinds = {type(v) for v in col if v is not None}
        if kinds <= {int} and None not in col:
            fields.append((name, np.int64))
        elif kinds <= {int, float}:
            fields.append((name, np.float64))
        else:
            width = max((len(str(v)) for v in col), default=1)
            fields.append((name, f"U{max(width, 1)}"))
    arr = np.empty(len(rows), dtype=fields)
    for j, (name, dt) in enumerate(fields):
        col = [r[j] for r in rows]
        if dt == np.float64:
            arr[name] = [np.nan if v is None else v for v in col]
        elif dt == np.int64:
            arr[name] = col
        else:
            arr[name] = ["" if v is None else str(v) for v in col]
    return arr


def _archive_path(run: str | pathlib.Path) -> pathlib.Path:
    p = pathlib.Path(run)
    if p.is_dir():
        p = p / ARCHIVE_NAME
    if not p.exists():
        raise ArchiveError(f"{p}: no telemetry archive there")
    return p


def load_run(run_dir: str | pathlib.Path) -> RunArchive:
    """Load a run directory (or its ``telemetry.sqlite``) into numpy structured arrays,
    one per table: ``telemetry``, ``payload``, ``events``, ``channels``, ``meta``.
    Works on the archive of a run that is still going or was killed."""
    path = _archive_path(run_dir)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        run = RunArchive()
        have = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in TABLES:
            order = {"meta": "key", "channels": "position", "telemetry": "t_ns",
                     "payload": "t_ns, board", "events": "seq", "enums": "channel, value",
                     "link_stats": "t_ns, board"}[table]
            if table == "enums" and table not in have:  # a schema 1 archive: no enums table
                run[table] = np.empty(0, dtype=[("channel", "U1"), ("value", np.int64), ("name", "U1")])
                continue
            if table == "link_stats" and table not in have:  # schema 1: none
                run[table] = np.empty(0, dtype=[("t_ns", np.int64), ("board", "U1"), ("retries", np.int64),
                                                ("errors", np.int64)])
                continue
            run[table] = _structured(db.execute(f"SELECT * FROM {table} ORDER BY {order}"))
        run.meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise ArchiveError(f"{path}: not a readable orbit-hil archive: {exc}") from None
    finally:
        db.close()
    run.path = path.parent
    return run


def table_rows(run_dir: str | pathlib.Path, table: str) -> list[tuple]:
    """All rows of one table in key order (for row-for-row comparisons)."""
    if table not in TABLES:
        raise ArchiveError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    path = _archive_path(run_dir)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
    finally:
        db.close()


def export_csv(run_dir: str | pathlib.Path, out_dir: str | pathlib.Path,
               tables: Iterable[str] = TABLES) -> list[pathlib.Path]:
    """Write one CSV per table (header row, then rows) into ``out_dir``."""
    path = _archive_path(run_dir)
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ArchiveError(f"{out}: exists and is not a directory; CSV export writes one file "
                           "per table into a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"{out}: cannot make the export directory: {exc.strerror or exc}") from None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    written = []
    dest = out
    try:
        have = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in tables:
            if table == "enums" and table not in have:  # a schema 1 archive
                continue
            cur = db.execute(f"SELECT * FROM {table} ORDER BY 1")
            dest = out / f"{table}.csv"
            with dest.open("w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow([d[0] for d in cur.description])
                for row in cur:
                    w.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v)
                                for v in row])
            written.append(dest)
    except sqlite3.DatabaseError as exc:
        raise ArchiveError(f"{path}: not a readable orbit-hil archive: {exc}") from None
    except OSError as exc:  # a full disk, a file that cannot be written
        raise ArchiveError(f"{exc.filename or dest}: cannot write the CSV export: {exc.strerror or exc}") from None
    finally:
        db.close()
    return written
