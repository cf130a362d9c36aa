"""The run's errors and its result (docs/running.md, "Exit codes")."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from hil_rig.archive import load_run
from hil_rig.requirements import Verdict


class RunError(RuntimeError):
    """The run cannot start or go on: bad bench file, a board that does not answer,
    a fault the bench cannot deliver... The message names what and why."""


class RequirementFailed(AssertionError):
    """Raised by :meth:`RunResult.check` when a requirement failed."""


@dataclasses.dataclass
class RunResult:
    run_dir: pathlib.Path
    passed: bool
    verdicts: list[Verdict]
    summary: dict[str, Any]
    aborted: str | None = None

    @property
    def exit_code(self) -> int:
        if self.aborted == "SIGTERM":
            return 143
        if self.aborted:
            return 130 if self.aborted == "interrupted" else 1
        return 0 if self.passed else 1

    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]

    def check(self) -> RunResult:
        """Raise :class:`RequirementFailed` naming failed requirements and the run directory."""
        if not self.passed:
            lines = [f"  {v.name}: {v.detail}" for v in self.failures()]
            if self.aborted:
                lines.append(f"  run aborted: {self.aborted}")
            raise RequirementFailed(
                f"scenario {self.summary.get('scenario')!r} failed; run directory: {self.run_dir}\n"
                + "\n".join(lines))
        return self

    def load(self) -> Any:
        return load_run(self.run_dir)
