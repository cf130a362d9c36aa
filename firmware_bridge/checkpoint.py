"""A job's checkpoint files: the format, written by a job's worker, read by the
worker that resumes it and by the agent that lists checkpointed jobs at boot.

A checkpoint is a ``job<N>.ckpt.0`` or ``.1`` in the agent's state directory:
two slots written in turn (see :func:`save`), each with the job's working state
and what the job is. File layout: :data:`CKPT_MAGIC`, a 4-byte big-endian header
length, a JSON header (``step``; ``crc32`` of the data; ``arrays``: each array's
name, NumPy dtype and shape, by name; ``job``: its id, workload, params, deadline
and start) and the arrays' bytes, C order, in that order. One write of the raw
arrays: ``np.savez``'s zip container cost ~0.7 ms of CPU a save, and a separate
JSON record renamed over the last one ~0.3 ms of the agent's.

After a reboot or a power cycle, each checkpointed job comes back as
``suspended`` at its newest whole checkpoint (:func:`listed`). Finishing,
failing, cancelling or missing the deadline deletes the files (:func:`forget`).

Stdlib only, except :func:`save` and :func:`load`, which get NumPy passed in
(they run in a worker process).
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Iterator

CKPT_MAGIC = b"OHILCKPT1\n"

_CKPT_NAME = re.compile(r"job(\d+)\.ckpt\.[01]")


def path_of(state_dir: str, job_id: int) -> str:
    """The stem of job ``job_id``'s checkpoint files (its slots add ``.0`` and ``.1``)."""
    return os.path.join(state_dir, f"job{job_id}.ckpt")


def slots(path: str) -> tuple[str, str]:
    """The two files a job's checkpoints go to in turn (``job<N>.ckpt.0``, ``.1``)."""
    return path + ".0", path + ".1"


def save(path: str, slot: int, step: int, arrays: dict, job: dict | None, np, durable: bool = False) -> None:
    """``arrays`` at ``step`` to ``path``'s slot ``slot``. The slot written is the
    older one, removed first and written as a new file, so the other slot keeps the
    last checkpoint whole until this one is (a power loss mid-save leaves a torn
    file that :func:`load` passes over). No rename over an existing file: on ext4
    that forces the new data to disk (``auto_da_alloc``), which cost more CPU than
    the rest of a save. ``durable`` (a real board, whose power loss takes the page
    cache with it): the file and its directory entry are on the disk before this
    returns, so a checkpoint acknowledged is one a power cycle keeps (a QEMU board
    lost every checkpoint of a power cycle seconds after it without this; an
    emulated board's "power loss" kills a process, and the host keeps its page cache)."""
    names = sorted(arrays)
    data = [np.ascontiguousarray(arrays[k]) for k in names]
    crc = 0
    for a in data:
        crc = zlib.crc32(a.data, crc)
    head = {"step": step, "crc32": crc,
            "arrays": [[k, a.dtype.str, list(a.shape)] for k, a in zip(names, data, strict=True)]}
    if job is not None:
        head["job"] = job
    head = json.dumps(head, separators=(",", ":")).encode()
    target = slots(path)[slot]
    try:
        os.unlink(target)
    except FileNotFoundError:
        pass
    with open(target, "wb") as f:
        f.write(CKPT_MAGIC + len(head).to_bytes(4, "big") + head)
        for a in data:
            f.write(a.data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    if durable:
        fd = os.open(os.path.dirname(target) or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load(path: str, np) -> tuple[int, int, dict]:
    """(slot, step, arrays by name) of the newest whole checkpoint in ``path``'s
    slots; ValueError naming the files if none is whole."""
    best, errors = newest(path)
    if best is None:
        raise ValueError("; ".join(errors) or f"{path}: no checkpoint")
    slot, raw, head, off = best
    return slot, int(head["step"]), _arrays(raw, head, off, np)


def header(raw: bytes, where: str = "checkpoint") -> tuple[dict, int]:
    """(header, offset of the arrays' bytes) of a checkpoint file's bytes, checked
    whole: magic, header, each array's size, the total length and the data's
    CRC-32. ValueError saying what is wrong."""
    m = len(CKPT_MAGIC)
    if raw[:m] != CKPT_MAGIC or len(raw) < m + 4:
        raise ValueError(f"{where}: not a job checkpoint (bad magic)")
    n = int.from_bytes(raw[m:m + 4], "big")
    try:
        head = json.loads(raw[m + 4:m + 4 + n])
        int(head["step"])
        size = 0
        for _name, dt, shape in head["arrays"]:
            count = 1
            for x in shape:
                count *= int(x)
            size += int(dt[2:]) * count  # a NumPy dtype.str: '<f4', '|u1', ...
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"{where}: bad checkpoint header ({exc})") from None
    off = m + 4 + n
    if len(raw) < off + size:
        raise ValueError(f"{where}: checkpoint truncated ({len(raw) - off} of {size} data bytes)")
    if len(raw) > off + size:
        raise ValueError(f"{where}: {len(raw) - off - size} bytes after the last array")
    if zlib.crc32(memoryview(raw)[off:]) != head.get("crc32"):
        raise ValueError(f"{where}: checkpoint data CRC mismatch (corrupted)")
    return head, off


def _arrays(raw: bytes, head: dict, off: int, np) -> dict:
    """The arrays, by name, of a whole checkpoint (:func:`header`'s result)."""
    arrays = {}
    for k, dt, shape in head["arrays"]:
        dtype = np.dtype(dt)
        count = int(np.prod(shape, dtype=np.int64))
        arrays[str(k)] = np.frombuffer(raw, dtype=dtype, count=count, offset=off).reshape(shape).copy()
        off += dtype.itemsize * count
    return arrays


def newest(path: str) -> tuple[tuple[int, bytes, dict, int] | None, list[str]]:
    """The newest whole checkpoint in ``path``'s slots as (slot, its bytes, header,
    offset of the arrays), or None; and why each other file there is not whole.
    The agent lists jobs with it and the worker resumes from it: the same one."""
    best, errors = None, []
    for slot, p in enumerate(slots(path)):
        try:
            with open(p, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            continue
        except OSError as exc:  # unreadable: as good as torn
            errors.append(f"{p}: {exc.strerror or exc}")
            continue
        try:
            head, off = header(raw, p)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if best is None or int(head["step"]) > int(best[2]["step"]):
            best = (slot, raw, head, off)
    return best, errors


def listed(state_dir: str) -> Iterator[tuple[int, int, dict]]:
    """(job id, step, the header's ``job`` record) of every job whose newest whole
    checkpoint in ``state_dir`` says what the job is, by job id; torn or foreign
    files are passed over."""
    ids = set()
    for name in os.listdir(state_dir):
        m = _CKPT_NAME.fullmatch(name)
        if m:
            ids.add(int(m.group(1)))
    for jid in sorted(ids):
        best, _ = newest(path_of(state_dir, jid))
        if best is None:
            continue
        head = best[2]
        if isinstance(head.get("job"), dict):
            yield jid, int(head["step"]), head["job"]


def forget(path: str) -> None:
    """Delete both slots of ``path`` (those that exist)."""
    for p in slots(path):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
