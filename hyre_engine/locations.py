"""Where the store's database file is, without importing the store (duckdb, pandas).

The app's first-launch screen asks this before its heavy imports: a fresh install has
no file there yet.
"""

from __future__ import annotations

import os
from pathlib import Path

# Lets tests, CI and the app each point at their own file without code changes.
DB_ENV_VAR = "HYRE_DB"
# Relative to the working directory: the repository's data/ folder when run from a
# checkout (where data/*.duckdb is gitignored), a data/ folder of the user's own otherwise.
LOCAL_DB_PATH = Path("data") / "hyre.duckdb"


def default_db_path() -> str:
    """$HYRE_DB if set, else data/hyre.duckdb under the working directory, as an absolute path."""
    return os.environ.get(DB_ENV_VAR) or str(LOCAL_DB_PATH.resolve())
