"""What a bench holds, read from its bench file without starting anything
(the pytest plugin's ``bench`` fixture and its markers use it)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

from hil_rig.run.errors import RunError


@dataclasses.dataclass(frozen=True)
class BenchInfo:
    """The boards and instruments of a bench file."""

    label: str                                   # "virtual" or the bench file path
    path: pathlib.Path | None
    boards: tuple[tuple[str, str], ...]          # (name, kind): kind is jetson | rpi | emulated
    emulates: tuple[tuple[str, str], ...]        # (name, jetson | rpi)
    instruments: tuple[tuple[str, tuple[str, ...]], ...]  # (name, kinds it answers to)
    spec: Any = dataclasses.field(default=None, repr=False, compare=False)  # benchfile.Bench

    @property
    def real_boards(self) -> tuple[str, ...]:
        return tuple(n for n, k in self.boards if k != "emulated")

    @property
    def virtual(self) -> bool:
        return not self.real_boards

    def has_board(self, kind: str) -> bool:
        """A board of this kind: ``emulated``, or ``jetson``/``rpi`` (real or emulated)."""
        return any(kind in (k, e) for (_, k), (_, e) in zip(self.boards, self.emulates, strict=True))

    @property
    def boards_text(self) -> str:
        """``name:kind,...`` with what each board is (jetson | rpi), as summary.json and
        the archive's meta write it."""
        return boards_text(dict(self.emulates))

    def has_instrument(self, kind: str) -> bool:
        return any(kind in kinds for _, kinds in self.instruments)


def boards_text(boards: dict[str, str]) -> str:
    """``name:kind,...`` of a run's boards (name -> jetson | rpi)."""
    return ",".join(f"{n}:{k}" for n, k in boards.items())


def bench_label(bench: Any, path: pathlib.Path | None) -> str:
    """How a run names its bench: its name and file."""
    return f"{bench.name!r} ({'built-in virtual bench' if path is None else path})"


def describe_bench(bench_file: str | os.PathLike[str] | None) -> BenchInfo:
    """The boards and instruments of a bench file (None: the built-in virtual bench)."""
    from hil_rig.benchfile import load_bench
    from hil_rig.instruments.errors import ConfigError

    try:
        bench = load_bench(bench_file)
    except ConfigError as exc:
        raise RunError(str(exc)) from None
    path = None if bench_file is None else pathlib.Path(bench_file)
    boards = tuple((b.name, b.kind) for b in bench.boards)
    emulates = tuple((b.name, b.emulates) for b in bench.boards)
    aliases = {"switch": ("relay",), "supply": ("psu",)}
    instruments = tuple(
        (i.name, tuple(sorted({i.kind, i.driver, *aliases.get(i.kind, ())}))) for i in bench.instruments)
    return BenchInfo(bench_label(bench, path), path, boards, emulates, instruments, bench)
