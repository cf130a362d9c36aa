"""Link fault proxy: a seeded, code-controlled bad cable between two serial endpoints.

Board side: an open file descriptor (for example a pty master) or a path/URL that
pyserial opens (a pty slave or a real device). Link side: a fresh pty that the
proxy owns; the link opens ``proxy.link_path`` (optionally a stable symlink, like
``/dev/serial/by-id/...``). Every byte in either direction can be dropped,
corrupted (one random bit flipped), duplicated or delayed, with per-byte
probabilities. The proxy knows one thing about the protocol: frames end with a
0x00 delimiter (``firmware_bridge.framing``). The fate of each byte of a frame
is drawn from a numpy Generator seeded with the proxy's seed, the direction, the
frame's bytes and how many times the same bytes have passed before (a retry);
the delimiters themselves pass untouched, so a fault damages the frame it hits
and never merges two. A run is therefore reproducible from its seed even
though replies that wait on a board's job worker (a checkpoint) may interleave
differently with the others from run to run, and however reads split the
stream. Bytes that no delimiter follows are held at most ``HOLD_S``, then
treated as one frame. :meth:`unplug` makes the
link-side port vanish (the pty is closed and the symlink removed, as when a USB
adapter is pulled); :meth:`replug` brings a new one back under the same symlink.

>>> proxy = FaultProxy(board_fd, link_symlink="/tmp/bench/board0", seed=7)  # doctest: +SKIP
>>> proxy.set_faults(corrupt=0.01)                                          # doctest: +SKIP
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import os
import select
import threading
import time
import tty
from dataclasses import dataclass, field

import numpy as np

from .framing import DELIMITER  # frames end with it; the proxy never mangles it

DIRECTIONS = ("to_link", "to_board", "both")
HOLD_S = 0.02  # bytes no delimiter follows are held this long, then taken as one frame
SEEN_MAX = 65536  # frames remembered for their retry count


@dataclass
class LinkFaults:
    drop: float = 0.0
    corrupt: float = 0.0
    duplicate: float = 0.0
    delay_s: float = 0.0

    @property
    def active(self) -> bool:
        """Whether any byte can be damaged (a delay alone damages none)."""
        return bool(self.drop or self.corrupt or self.duplicate)

    def check(self) -> None:
        for k in ("drop", "corrupt", "duplicate"):
            v = getattr(self, k)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"fault probability {k} must be in 0..1, got {v}")
        if not 0.0 <= self.delay_s <= 60.0:
            raise ValueError(f"delay_s must be in 0..60, got {self.delay_s}")


@dataclass
class DirectionStats:
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: int = 0
    corrupted: int = 0
    duplicated: int = 0
    lost_unplugged: int = 0


@dataclass
class ProxyStats:
    to_link: DirectionStats = field(default_factory=DirectionStats)
    to_board: DirectionStats = field(default_factory=DirectionStats)
    unplugs: int = 0


class FaultProxy:
    def __init__(self, board: int | str, *, link_symlink: str | None = None, baud: int = 921600,
                 seed: int = 0) -> None:
        self._ser = None
        if isinstance(board, int):
            self._board_fd = board
            os.set_blocking(board, False)
        else:
            import serial

            self._ser = serial.serial_for_url(board, baudrate=baud, timeout=0, exclusive=True)
            self._board_fd = self._ser.fileno()
        self.link_symlink = link_symlink
        self.seed = int(seed)
        self._seen: dict[tuple[str, bytes], int] = {}  # (direction, frame digest) -> times passed
        self._partial = {"to_link": b"", "to_board": b""}  # bytes awaiting their delimiter
        self._partial_since = {"to_link": 0.0, "to_board": 0.0}
        self.faults = {"to_link": LinkFaults(), "to_board": LinkFaults()}
        self.stats = ProxyStats()
        self._lock = threading.Lock()
        self._delayed: list[tuple[float, int, str, bytes]] = []
        self._counter = 0
        self._master: int | None = None
        self._slave_path = ""
        self._stop = threading.Event()
        self._link_absent_until = 0.0
        self._plug()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()

    # -- control (thread-safe)
    @property
    def link_path(self) -> str:
        """The path the link should open: the symlink if configured, else the pty slave."""
        return self.link_symlink or self._slave_path

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def set_faults(self, *, drop: float = 0.0, corrupt: float = 0.0, duplicate: float = 0.0,
                   delay_s: float = 0.0, direction: str = "both") -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        f = LinkFaults(drop, corrupt, duplicate, delay_s)
        f.check()
        with self._lock:
            for d in ("to_link", "to_board"):
                if direction in (d, "both"):
                    self.faults[d] = LinkFaults(drop, corrupt, duplicate, delay_s)

    def clear_faults(self) -> None:
        self.set_faults()

    def unplug(self) -> None:
        """The link-side port vanishes (USB adapter pulled)."""
        with self._lock:
            if self._master is None:
                return
            if self.link_symlink and os.path.islink(self.link_symlink):
                os.unlink(self.link_symlink)
            os.close(self._master)
            self._master = None
            self.stats.unplugs += 1

    def replug(self) -> None:
        """A new port appears under the same symlink."""
        with self._lock:
            if self._master is None:
                self._plug()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.unplug()
        if self._ser is not None:
            self._ser.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals
    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        self._slave_path = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        self._link_absent_until = 0.0
        if self.link_symlink:
            tmp = self.link_symlink + ".new"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self._slave_path, tmp)
            os.replace(tmp, self.link_symlink)

    def _mangle(self, direction: str, data: bytes) -> bytes:
        """Faults applied to ``data``, frame by frame; a tail without its delimiter is
        kept in ``_partial`` (see :meth:`_flush_partial`)."""
        f = self.faults[direction]
        st: DirectionStats = getattr(self.stats, direction)
        st.bytes_in += len(data)
        held = self._partial[direction]
        if not f.active:
            self._partial[direction] = b""
            return held + data
        buf = held + data
        end = buf.rfind(DELIMITER) + 1
        if end < len(buf):
            if not held:
                self._partial_since[direction] = time.monotonic()
            self._partial[direction] = buf[end:]
        else:
            self._partial[direction] = b""
        frames = buf[:end].split(DELIMITER)[:-1]  # each was followed by a delimiter
        return b"".join(self._mangle_frame(direction, fr, f, st) + DELIMITER for fr in frames)

    def _mangle_frame(self, direction: str, body: bytes, f: LinkFaults, st: DirectionStats) -> bytes:
        """One frame's bytes (no delimiter) through the faults: each byte's fate (drop,
        corrupt, duplicate, which bit) from a Generator keyed by the seed, the direction,
        the bytes and the how-many-th time they pass."""
        if not body:
            return body
        digest = hashlib.blake2b(body, digest_size=16).digest()
        n_seen = self._seen.get((direction, digest), 0)
        self._seen[(direction, digest)] = n_seen + 1
        if len(self._seen) > SEEN_MAX:  # forget the oldest half (retries come within seconds)
            for k in list(self._seen)[:SEEN_MAX // 2]:
                del self._seen[k]
        key = [self.seed & 0xFFFFFFFF, self.seed >> 32 & 0xFFFFFFFF, DIRECTIONS.index(direction),
               n_seen, *(int.from_bytes(digest[i:i + 4], "big") for i in range(0, 16, 4))]
        u = np.random.default_rng(key).random((len(body), 4))  # per byte: drop, corrupt, duplicate, bit
        arr = np.frombuffer(body, dtype=np.uint8).copy()
        corrupt = u[:, 1] < f.corrupt
        if corrupt.any():
            bits = (u[:, 3] * 8).astype(np.uint8)
            arr[corrupt] ^= (np.uint8(1) << bits[corrupt])
        drop = u[:, 0] < f.drop
        dup = (u[:, 2] < f.duplicate) & ~drop
        st.dropped += int(drop.sum())
        st.corrupted += int(corrupt.sum())
        st.duplicated += int(dup.sum())
        return np.repeat(arr, 1 - drop.astype(np.int64) + dup.astype(np.int64)).tobytes()

    def _flush_partial(self, now: float) -> None:
        """Held bytes whose delimiter has not come within ``HOLD_S``: one frame, sent on."""
        for direction, held in self._partial.items():
            if held and now - self._partial_since[direction] >= HOLD_S:
                self._partial[direction] = b""
                f = self.faults[direction]
                st: DirectionStats = getattr(self.stats, direction)
                out = self._mangle_frame(direction, held, f, st) if f.active else held
                if out:
                    self._send(direction, out, f.delay_s)

    def _deliver(self, direction: str, data: bytes) -> None:
        st: DirectionStats = getattr(self.stats, direction)
        fd = self._master if direction == "to_link" else self._board_fd
        if fd is None:
            st.lost_unplugged += len(data)
            return
        view = memoryview(data)
        deadline = time.monotonic() + 0.2
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                select.select([], [fd], [], 0.01)
            except OSError:
                break
        st.bytes_out += len(data) - len(view)
        st.lost_unplugged += len(view)

    def _forward(self, direction: str, data: bytes) -> None:
        with self._lock:
            out = self._mangle(direction, data)
            if out:
                self._send(direction, out, self.faults[direction].delay_s)

    def _send(self, direction: str, out: bytes, delay: float) -> None:
        if delay > 0:
            self._counter += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._counter, direction, out))
            return
        self._deliver(direction, out)

    def _read(self, fd: int) -> bytes | None:
        try:
            return os.read(fd, 65536)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                return None
            raise

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                self._flush_partial(now)
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, d, data = heapq.heappop(self._delayed)
                    self._deliver(d, data)
                master = self._master
                wait = 0.02
                if self._delayed:
                    wait = min(wait, max(0.0, self._delayed[0][0] - now))
                for d, held in self._partial.items():
                    if held:
                        wait = min(wait, max(0.0, self._partial_since[d] + HOLD_S - now))
            rlist = [self._board_fd]
            if master is not None and now >= self._link_absent_until:
                rlist.append(master)
            try:
                ready = select.select(rlist, [], [], wait)[0]
            except (OSError, ValueError):
                time.sleep(0.005)  # the master was closed by unplug() meanwhile
                continue
            if self._board_fd in ready:
                data = self._read(self._board_fd)
                if data:
                    self._forward("to_link", data)
                elif data is None:
                    time.sleep(0.005)
            if master is not None and master in ready:
                with self._lock:
                    if self._master != master:
                        continue  # unplugged meanwhile
                    try:
                        data = self._read(master)
                    except OSError:
                        continue
                if data is None:  # nobody has the link side open
                    self._link_absent_until = time.monotonic() + 0.01
                elif data:
                    self._forward("to_board", data)
