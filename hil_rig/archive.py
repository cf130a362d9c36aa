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
speed 1, the last few dozen in virtual time. Checkpoints
(copying the WAL back into the file, with its fsyncs) run on a thread of their
own every ``CHECKPOINT_EVERY`` commits, so the writer never waits for the disk.

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
import pathlib
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
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass  # a full disk: the rows stay in the WAL; the writer reports the failure
                if self._stop:
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


class Archive:
    """Writer. Telemetry and payload rows are buffered and go in as one batch at the
    next commit; :meth:`commit` ends the transaction, :meth:`commit_soon` does so when
    ``COMMIT_EVERY_S`` of wall time have passed since the last commit."""

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
        # one writer at a time, not always the same thread: a run is started in one thread and
        # may be stepped in another (a console's), and the run serializes its calls
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does it
        self._commits = 0
        self._last_commit = 0.0  # time.monotonic() of the last commit
        self._tm_rows: list[tuple] = []  # rows not yet inserted (see _flush)
        self._pl_rows: list[tuple] = []
        self._dirty = False  # something written since the last commit
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
        self._tm_sql = (
            f"INSERT INTO telemetry VALUES (?{', ?' * len(self.channels)})"
        )
        self.commit()

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
        self._execute("INSERT INTO link_stats VALUES (?, ?, ?, ?)", (int(t_ns), board, retries, errors))

    def event(self, t_ns: int, source: str, kind: str, detail: str = "") -> None:
        self._execute("INSERT INTO events (t_ns, source, kind, detail) VALUES (?, ?, ?, ?)",
                      (int(t_ns), source, kind, detail))

    def set_meta(self, key: str, value: object) -> None:
        self._execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def _flush(self) -> None:
        """Insert the buffered telemetry and payload rows (in the open transaction)."""
        for sql, rows in ((self._tm_sql, self._tm_rows), ("INSERT INTO payload VALUES (?, ?, ?, ?, ?, ?, ?)",
                                                          self._pl_rows)):
            if rows:
                try:
                    self._execute(sql, rows, many=True)
                finally:
                    rows.clear()

    def _execute(self, sql: str, params: Any = (), many: bool = False) -> None:
        if self.failed is not None:
            raise ArchiveError(self.failed)
        try:
            (self.db.executemany if many else self.db.execute)(sql, params)
        except sqlite3.OperationalError as exc:
            self._fail(exc)
        self._dirty = True

    def _fail(self, exc: sqlite3.Error) -> None:
        """A write failed (a full disk, an I/O error): the open transaction is rolled back,
        so the archive ends at the last commit, and every later write is refused."""
        full = getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"
        why = f"the disk is full ({exc})" if full else str(exc)
        self.failed = (f"{self.path}: cannot write the archive: {why}; it holds every "
                       "second committed before")
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolled back already
        raise ArchiveError(self.failed) from None

    def commit(self) -> None:
        """End the transaction: every row written so far is in the file."""
        self._flush()
        self._last_commit = time.monotonic()
        self._execute("COMMIT")
        self._execute("BEGIN")
        self._dirty = False
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0:
            if self._checkpointer is None:
                self._checkpointer = _Checkpointer(self.path)
            self._checkpointer.request()

    @property
    def dirty(self) -> bool:
        """Something was written since the last commit."""
        return self._dirty

    def commit_soon(self) -> None:
        """:meth:`commit` if ``COMMIT_EVERY_S`` of wall time have passed since the last one
        (the run calls it every simulated second, and commits at once whenever its loop
        hands control back: a step's end, a pause, the end of the run)."""
        if time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
            self.commit()

    def close(self) -> None:
        if self.db is None:
            return
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        try:
            if self.failed is None:
                self._flush()
                self._execute("COMMIT")
        finally:
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
