"""The README's test command and .ci/run must not drift apart."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _sh_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S)]


def test_readme_has_exactly_two_setup_commands() -> None:
    blocks = _sh_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) == 2, blocks


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_cmd = _sh_blocks((ROOT / "README.md").read_text(encoding="utf-8"))[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_cmd in ci.splitlines(), f"{test_cmd!r} not a line of .ci/run"
