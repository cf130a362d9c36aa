"""The ground port: CCSDS Space Packets over TCP on 127.0.0.1.

Uplink: a stream of authenticated TC packets (see :mod:`flight_sw.tc`), framed by
the length in each primary header. Packets are queued as bytes; the flight
software authenticates and executes them in its ``telecommand`` component, at
the next 1 Hz frame. A header that cannot start a TC packet (wrong version,
length beyond ``TC_MAX_PACKET``) makes the stream unframeable: the port counts
it and closes that connection; the port itself keeps serving.

Downlink: every housekeeping and event packet is sent to every connected client,
through a queue of ``max_downlink`` packets per client that a thread of its own
writes out: a slow or stopped client never holds up the flight software; when its
queue is full its packets are dropped and counted (``dropped_downlink``).
"""

from __future__ import annotations

import queue
import socket
import struct
import threading

from flight_sw.tc import TC_MAX_PACKET


class GroundPort:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, max_queue: int = 256,
                 max_downlink: int = 4096) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"ground port host {host!r}: only loopback is allowed")
        self._srv = socket.create_server((host, port))
        self._srv.settimeout(0.2)
        self.address = self._srv.getsockname()[:2]
        self.uplink: queue.Queue[bytes] = queue.Queue(max_queue)
        self.dropped_uplink = 0
        self.dropped_downlink = 0
        self.max_downlink = max_downlink
        self._outq: dict[socket.socket, queue.Queue[bytes | None]] = {}
        self._writers: list[threading.Thread] = []
        self.framing_errors = 0
        self.connections = 0
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ground-port", daemon=True)
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
            self.connections += 1
            q: queue.Queue[bytes | None] = queue.Queue(self.max_downlink)
            with self._lock:
                self._clients.append(conn)
                self._outq[conn] = q
            threading.Thread(target=self._reader, args=(conn,), daemon=True).start()
            w = threading.Thread(target=self._writer, args=(conn, q), daemon=True)
            self._writers.append(w)
            w.start()

    def _writer(self, conn: socket.socket, q: queue.Queue[bytes | None]) -> None:
        while True:
            pkt = q.get()
            if pkt is None:
                return
            try:
                conn.sendall(pkt)
            except OSError:
                self._drop(conn)
                return

    def _recv_exact(self, conn: socket.socket, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            try:
                chunk = conn.recv(n - len(buf))
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def _reader(self, conn: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                hdr = self._recv_exact(conn, 6)
                if hdr is None:
                    return
                w0, _w1, ln = struct.unpack(">HHH", hdr)
                total = ln + 7
                if w0 >> 13 != 0 or total > TC_MAX_PACKET:
                    self.framing_errors += 1
                    return
                rest = self._recv_exact(conn, total - 6)
                if rest is None:
                    return
                try:
                    self.uplink.put_nowait(hdr + rest)
                except queue.Full:
                    self.dropped_uplink += 1
        finally:
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        with self._lock:
            if conn in self._clients:
                self._clients.remove(conn)
            q = self._outq.pop(conn, None)
        if q is not None:
            while True:  # wake its writer with the end mark, whatever is still queued
                try:
                    q.put_nowait(None)
                    break
                except queue.Full:
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        pass
        try:
            conn.close()
        except OSError:
            pass

    def drain(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.uplink.get_nowait())
            except queue.Empty:
                return out

    def send(self, pkt: bytes) -> None:
        """Queue a packet for every client (never blocks)."""
        with self._lock:
            queues = list(self._outq.values())
        for q in queues:
            try:
                q.put_nowait(pkt)
            except queue.Full:
                self.dropped_downlink += 1

    def close(self) -> None:
        self._stop.set()
        try:
            self._srv.close()
        except OSError:
            pass
        with self._lock:  # flush: each writer sends what is queued, then its end mark
            queues = list(self._outq.values())
        for q in queues:
            try:
                q.put(None, timeout=1.0)
            except queue.Full:
                pass
        for w in self._writers:
            w.join(timeout=1.0)
        with self._lock:
            clients, self._clients = self._clients, []
            self._outq.clear()
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self._thread.join(timeout=2)


def read_packet(sock: socket.socket) -> bytes | None:
    """Ground-tool helper: read one CCSDS packet from a TCP stream (None at EOF)."""
    hdr = b""
    while len(hdr) < 6:
        c = sock.recv(6 - len(hdr))
        if not c:
            return None
        hdr += c
    (ln,) = struct.unpack_from(">H", hdr, 4)
    body = b""
    while len(body) < ln + 1:
        c = sock.recv(ln + 1 - len(body))
        if not c:
            return None
        body += c
    return hdr + body
