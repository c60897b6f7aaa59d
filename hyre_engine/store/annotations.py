"""What people write beside their labels: a comment and a flag per pair, and a pool's guidelines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from hyre_engine.store.connection import StoreBase, _first, _now

# A comment is a note, not a document: long enough for a paragraph, short enough for a table.
MAX_COMMENT_CHARS = 2_000
# Guidelines are a page of Markdown, not a book.
MAX_GUIDELINES_CHARS = 20_000
NOTE_COLUMNS = ("row_index", "pair_id", "comment", "flagged", "actor", "updated_at")


@dataclass(frozen=True)
class NoteRecord:
    """A person's comment ("" when none) and review flag on one pair of a session."""

    comment: str
    flagged: bool


@dataclass(frozen=True)
class GuidelinesRecord:
    """A pool's labelling guidelines (Markdown), who saved them and when."""

    pool_id: str
    markdown: str
    actor: str
    updated_at: datetime


class AnnotationsMixin(StoreBase):
    """Store methods: comments and flags on a session's pairs, guidelines of a pool."""

    def set_note(
        self, session_id: str, *, row_index: int, pair_id: str, comment: str = "", flagged: bool = False,
        actor: str | None = None,
    ) -> None:
        """Store the comment and flag of one pair of the session (an empty, unflagged note removes it)."""
        if not isinstance(comment, str):
            raise ValueError(f"comment must be text, got {type(comment).__name__}")
        comment = comment.strip()
        if len(comment) > MAX_COMMENT_CHARS:
            raise ValueError(f"a comment is at most {MAX_COMMENT_CHARS} characters, this one is {len(comment)}")
        row_index = int(row_index)
        with self._transaction() as (cur, _):
            session = _first(cur.execute(
                "SELECT pool_id, user_name FROM sessions WHERE session_id = ?", [session_id]))
            if session is None:
                raise KeyError(f"no session {session_id!r}")
            stored = _first(cur.execute(
                "SELECT pair_id FROM pairs WHERE pool_id = ? AND row_index = ?", [session[0], row_index]))
            if stored is None or stored[0] != str(pair_id):
                raise ValueError(f"row_index {row_index} is not pair {pair_id!r} in pool {session[0]}")
            cur.execute("DELETE FROM label_notes WHERE session_id = ? AND row_index = ?", [session_id, row_index])
            if comment or flagged:
                cur.execute(
                    "INSERT INTO label_notes VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [session_id, row_index, str(pair_id), comment, bool(flagged),
                     session[1] if actor is None else str(actor), _now()],
                )

    def session_notes(self, session_id: str) -> pd.DataFrame:
        """DataFrame(row_index, pair_id, comment, flagged, actor, updated_at) of the session, by row_index."""
        return self._fetch_df(
            f"SELECT {', '.join(NOTE_COLUMNS)} FROM label_notes WHERE session_id = ? ORDER BY row_index",
            [session_id],
        )

    def get_note(self, session_id: str, row_index: int) -> NoteRecord | None:
        """The comment and flag of one pair of the session, or None."""
        row = _first(self._cursor().execute(
            "SELECT comment, flagged FROM label_notes WHERE session_id = ? AND row_index = ?",
            [session_id, int(row_index)]))
        return None if row is None else NoteRecord(comment=row[0], flagged=bool(row[1]))

    def set_guidelines(self, pool_id: str, markdown: str, *, actor: str = "") -> None:
        """Store the pool's labelling guidelines (Markdown; empty text removes them)."""
        if not isinstance(markdown, str):
            raise ValueError(f"guidelines must be text, got {type(markdown).__name__}")
        if len(markdown) > MAX_GUIDELINES_CHARS:
            raise ValueError(
                f"guidelines are at most {MAX_GUIDELINES_CHARS:,} characters, these are {len(markdown):,}")
        with self._transaction() as (cur, _):
            self._require(cur, "pools", "pool_id", pool_id, "pool")
            cur.execute("DELETE FROM pool_guidelines WHERE pool_id = ?", [pool_id])
            if markdown.strip():
                cur.execute("INSERT INTO pool_guidelines VALUES (?, ?, ?, ?)",
                            [pool_id, markdown, str(actor), _now()])

    def get_guidelines(self, pool_id: str) -> GuidelinesRecord | None:
        """The pool's guidelines, or None when it has none."""
        row = _first(self._cursor().execute(
            "SELECT markdown, actor, updated_at FROM pool_guidelines WHERE pool_id = ?", [pool_id]))
        return None if row is None else GuidelinesRecord(pool_id=pool_id, markdown=row[0], actor=row[1],
                                                         updated_at=row[2])
