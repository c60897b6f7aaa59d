"""The repository stays lint-clean: `ruff check .` (pyproject.toml's rules) finds nothing.

CI runs the README's `make test` (pytest) only, so the lint check lives here; ruff reads
the whole tree in well under a second.
"""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing_in_the_repository():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--quiet", "."],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"ruff check . found problems (fix them, or `ruff check --fix .`):\n{result.stdout}{result.stderr}"
