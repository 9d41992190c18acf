"""The README's commands do what it says, and leave nothing in the repository."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def readme_block_after(words: str) -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(re.escape(words) + r"\s*```sh\n(.*?)```", text, re.DOTALL)
    assert match, f"no sh block after {words!r} in README.md"
    return match.group(1)


def test_the_notebook_command_writes_its_copy_into_the_home(tmp_path: Path) -> None:
    """It wrote notebooks/quality.nbconvert.ipynb into the repository. Run as written in a
    copy of the repository's notebooks (without --execute: where it writes is the point)."""
    command = readme_block_after("Run one headless with")
    home = tmp_path / "home"
    command = command.replace("/path/to/home", str(home)).replace(" --execute", "")
    shutil.copytree(REPO / "notebooks", tmp_path / "repo" / "notebooks")
    before = sorted((tmp_path / "repo").rglob("*"))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euc", command],
        cwd=tmp_path / "repo",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted((tmp_path / "repo").rglob("*")) == before
    assert (home / "notebooks" / "quality.ipynb").is_file()


def test_git_ignores_what_notebooks_run_in_place_leave() -> None:
    patterns = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()]
    for leftover in ("quality.nbconvert.ipynb", ".ipynb_checkpoints/"):
        assert any(fnmatch.fnmatch(leftover, p) for p in patterns if p), leftover
