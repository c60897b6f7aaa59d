"""Labelling sessions: settings, labels in order, undo and reset, and their audit trail."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

from hyre_engine.numerics import SESSION_LABELS
from hyre_engine.store.connection import (
    SESSION_MODES,
    StoreBase,
    _check_name,
    _first,
    _new_id,
    _now,
    _to_json,
)
from hyre_engine.store.records import LabelRecord, SessionRecord


class AlreadyLabelledError(ValueError):
    """The pair already has a label in this session (``seq``): say so, never drop the click."""

    def __init__(self, message: str, *, seq: int) -> None:
        super().__init__(message)
        self.seq = int(seq)


# What the label audit trail records.
# "edit" keeps the new label (the old one is the seq's previous event); "delete" is a soft
# delete: the label leaves the session and stays here, with who and when.
AUDIT_ACTIONS = ("add", "undo", "reset", "restore", "edit", "delete")


class SessionsMixin(StoreBase):
    """Store methods: labelling sessions: settings, labels in order, undo and reset."""

    def get_or_create_session(
        self,
        *,
        user: str,
        pool_id: str,
        ensemble_id: str,
        mode: str = "human",
        persona: str | None = None,
    ) -> str:
        """The session of this user on this pool and ensemble (resumed if it exists); returns its id."""
        _check_name(user, "user")
        if mode not in SESSION_MODES:
            raise ValueError(f"mode must be one of {SESSION_MODES}, got {mode!r}")
        if mode == "persona":
            _check_name(persona, "persona (required when mode='persona')")
        persona_key = persona or ""
        with self._transaction() as (cur, _):
            row = _first(
                cur.execute(
                    "SELECT session_id FROM sessions WHERE user_name = ? AND pool_id = ? AND "
                    "ensemble_id = ? AND mode = ? AND persona = ?",
                    [user, pool_id, ensemble_id, mode, persona_key],
                )
            )
            if row is not None:
                return row[0]
            self._require(cur, "pools", "pool_id", pool_id, "pool")
            self._require(cur, "ensembles", "ensemble_id", ensemble_id, "ensemble")
            session_id = _new_id("session")
            now = _now()
            cur.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, '{}', ?, ?)",
                [session_id, user, pool_id, ensemble_id, mode, persona_key, now, now],
            )
            return session_id

    def get_session(self, session_id: str) -> SessionRecord:
        """The session with its settings, how many rows it has labelled and its revision (one
        query: what the Label page reads once per label); KeyError when absent."""
        row = _first(self._cursor().execute(
            # uncorrelated subqueries: DuckDB plans a correlated one as a join (3x the CPU)
            "SELECT session_id, user_name, pool_id, ensemble_id, mode, persona, settings, "
            "(SELECT count(*) FROM session_labels WHERE session_id = $1), created_at, updated_at, "
            "(SELECT count(*) FROM label_audit WHERE session_id = $1) FROM sessions WHERE session_id = $1",
            [session_id]))
        if row is None:
            raise KeyError(f"no session {session_id!r}")
        sid, user, pool_id, ensemble_id, mode, persona, settings, n_labels, created, updated, revision = row
        return SessionRecord(
            session_id=sid, user=user, pool_id=pool_id, ensemble_id=ensemble_id, mode=mode,
            persona=persona or None, settings=json.loads(settings), n_labels=int(n_labels),
            created_at=created, updated_at=updated, revision=int(revision),
        )

    def update_session(self, session_id: str, **settings: Any) -> dict[str, Any]:
        """Merge settings (e.g. strategy, beta) into the session's; returns all its settings."""
        with self._transaction() as (cur, _):
            row = _first(
                cur.execute("SELECT settings FROM sessions WHERE session_id = ?", [session_id])
            )
            if row is None:
                raise KeyError(f"no session {session_id!r}")
            merged = {**json.loads(row[0]), **settings}
            cur.execute(
                "UPDATE sessions SET settings = ?, updated_at = ? WHERE session_id = ?",
                [_to_json(merged, what="settings"), _now(), session_id],
            )
        return merged

    def add_session_label(
        self, session_id: str, *, row_index: int, pair_id: str, label: str, actor: str | None = None
    ) -> int:
        """Append a label ('a', 'b' or 'skip') for one pair of the session's pool; returns its seq (0, 1, ...).

        A pair already labelled in this session raises `AlreadyLabelledError` (a
        ValueError; undo it first). ``actor`` (default: the session's user) is
        recorded in the audit trail.
        """
        if label not in SESSION_LABELS:
            raise ValueError(f"label must be one of {SESSION_LABELS}, got {label!r}")
        row_index = int(row_index)
        with self._transaction() as (cur, _):
            # what the write checks and numbers with, in four one-table reads (the session and its
            # user, the pair at row_index, an earlier label of it and the next seq, the next audit
            # event): about 0.7 ms each, where one query of five subqueries took 5 ms
            row = _first(cur.execute("SELECT pool_id, user_name FROM sessions WHERE session_id = ?", [session_id]))
            if row is None:
                raise KeyError(f"no session {session_id!r}")
            pool_id, user = row
            found = _first(cur.execute(
                "SELECT pair_id FROM pairs WHERE pool_id = ? AND row_index = ?", [pool_id, row_index]))
            stored = None if found is None else found[0]
            done, seq = cur.execute(
                "SELECT min(seq) FILTER (WHERE row_index = $2), coalesce(max(seq) + 1, 0) FROM session_labels "
                "WHERE session_id = $1", [session_id, row_index]).fetchall()[0]
            event = cur.execute("SELECT coalesce(max(event) + 1, 0) FROM label_audit WHERE session_id = ?",
                                [session_id]).fetchall()[0][0]
            if stored is None or stored != str(pair_id):
                raise ValueError(
                    f"row_index {row_index} is pair {stored!r} in pool {pool_id}, not {pair_id!r}"
                )
            if done is not None:
                raise AlreadyLabelledError(
                    f"row_index {row_index} is already labelled in this session (seq {done})", seq=done,
                )
            now = _now()
            cur.execute(
                "INSERT INTO session_labels VALUES (?, ?, ?, ?, ?, ?)",
                [session_id, seq, row_index, str(pair_id), label, now],
            )
            self._audit(cur, session_id, "add", [(seq, row_index, str(pair_id), label)],
                        user if actor is None else actor, now, start=event)
            cur.execute(
                "UPDATE sessions SET updated_at = ? WHERE session_id = ?", [now, session_id]
            )
        return seq

    def undo_session_label(self, session_id: str, *, actor: str | None = None) -> LabelRecord | None:
        """Remove the session's last label and return it, or None when it has none.

        The removed label stays in the audit trail (`label_history`).
        """
        with self._transaction() as (cur, _):
            self._require(cur, "sessions", "session_id", session_id, "session")
            row = _first(
                cur.execute(
                    "SELECT seq, row_index, pair_id, label, created_at FROM session_labels "
                    "WHERE session_id = ? ORDER BY seq DESC LIMIT 1",
                    [session_id],
                )
            )
            if row is None:
                return None
            cur.execute(
                "DELETE FROM session_labels WHERE session_id = ? AND seq = ?", [session_id, row[0]]
            )
            now = _now()
            self._audit(cur, session_id, "undo", [row[:4]], actor, now)
            cur.execute(
                "UPDATE sessions SET updated_at = ? WHERE session_id = ?", [now, session_id]
            )
        seq, row_index, pair_id, label, created_at = row
        return LabelRecord(seq=int(seq), row_index=int(row_index), pair_id=pair_id, label=label,
                           created_at=created_at)

    def edit_session_label(
        self, session_id: str, seq: int, *, label: str, actor: str | None = None
    ) -> LabelRecord:
        """Change the label of the session's row ``seq`` (it keeps its place in the order).

        Returns the row as it was; the
        change is kept in the audit trail. KeyError when the session has no such row.
        """
        if label not in SESSION_LABELS:
            raise ValueError(f"label must be one of {SESSION_LABELS}, got {label!r}")
        with self._transaction() as (cur, _):
            row = self._label_row(cur, session_id, seq)
            cur.execute("UPDATE session_labels SET label = ? WHERE session_id = ? AND seq = ?",
                        [label, session_id, int(seq)])
            now = _now()
            self._audit(cur, session_id, "edit", [(row[0], row[1], row[2], label)], actor, now)
            cur.execute("UPDATE sessions SET updated_at = ? WHERE session_id = ?", [now, session_id])
        return _label_record(row)

    def delete_session_label(self, session_id: str, seq: int, *, actor: str | None = None) -> LabelRecord:
        """Remove the session's row ``seq`` (any, not only the last); returns it.

        A soft delete: the row stays in the audit trail with who and when, and the
        pair may be asked again. KeyError when the session has no such row.
        """
        with self._transaction() as (cur, _):
            row = self._label_row(cur, session_id, seq)
            cur.execute("DELETE FROM session_labels WHERE session_id = ? AND seq = ?", [session_id, int(seq)])
            now = _now()
            self._audit(cur, session_id, "delete", [row[:4]], actor, now)
            cur.execute("UPDATE sessions SET updated_at = ? WHERE session_id = ?", [now, session_id])
        return _label_record(row)

    def _label_row(self, cur: duckdb.DuckDBPyConnection, session_id: str, seq: int) -> tuple:
        self._require(cur, "sessions", "session_id", session_id, "session")
        row = _first(cur.execute(
            "SELECT seq, row_index, pair_id, label, created_at FROM session_labels "
            "WHERE session_id = ? AND seq = ?", [session_id, int(seq)]))
        if row is None:
            raise KeyError(f"session {session_id!r} has no label number {seq}")
        return row

    def session_revision(self, session_id: str) -> int:
        """How many label events the session's audit trail holds: it changes with every
        add, undo, edit, delete, reset and restore, so a cached replay can tell it is stale."""
        return int(self._cursor().execute(
            "SELECT count(*) FROM label_audit WHERE session_id = ?", [session_id]).fetchall()[0][0])

    def session_labels(self, session_id: str) -> pd.DataFrame:
        """DataFrame(seq, row_index, pair_id, label, created_at) in labelling order."""
        self._require(self._cursor(), "sessions", "session_id", session_id, "session")
        return self._fetch_df(
            "SELECT seq, row_index, pair_id, label, created_at FROM session_labels "
            "WHERE session_id = ? ORDER BY seq",
            [session_id],
        )

    def reset_session(self, session_id: str, *, actor: str | None = None) -> int:
        """Remove all of the session's labels (settings stay); returns how many were removed.

        The labels stay in the audit trail, and `undo_reset` puts them back.
        """
        with self._transaction() as (cur, _):
            self._require(cur, "sessions", "session_id", session_id, "session")
            rows = cur.execute(
                "SELECT seq, row_index, pair_id, label FROM session_labels WHERE session_id = ? "
                "ORDER BY seq",
                [session_id],
            ).fetchall()
            cur.execute("DELETE FROM session_labels WHERE session_id = ?", [session_id])
            now = _now()
            self._audit(cur, session_id, "reset", rows, actor, now, batch=_new_id("reset"))
            cur.execute(
                "UPDATE sessions SET updated_at = ? WHERE session_id = ?", [now, session_id]
            )
        return len(rows)

    def undo_reset(self, session_id: str, *, actor: str | None = None) -> int:
        """Put back the labels of the session's last reset; returns how many.

        Only while nothing was labelled since (ValueError otherwise: undo those
        labels first), so the restored labels keep their order and numbers.
        """
        with self._transaction() as (cur, _):
            self._require(cur, "sessions", "session_id", session_id, "session")
            last = _first(cur.execute(
                "SELECT batch FROM label_audit WHERE session_id = ? AND action = 'reset' "
                "ORDER BY event DESC LIMIT 1", [session_id]))
            restored = last is not None and _first(cur.execute(
                "SELECT 1 FROM label_audit WHERE session_id = ? AND action = 'restore' AND batch = ?",
                [session_id, last[0]])) is not None
            if last is None or restored:
                raise ValueError("this session has no reset to undo")
            n_now = cur.execute(
                "SELECT count(*) FROM session_labels WHERE session_id = ?", [session_id]
            ).fetchall()[0][0]
            if n_now:
                raise ValueError(
                    f"{n_now} label(s) were added since the reset: undo them before undoing the reset"
                )
            rows = cur.execute(
                "SELECT seq, row_index, pair_id, label, happened_at FROM label_audit WHERE session_id = ? "
                "AND batch = ? AND action = 'reset' ORDER BY seq", [session_id, last[0]]).fetchall()
            for seq, row_index, pair_id, label, at in rows:
                cur.execute("INSERT INTO session_labels VALUES (?, ?, ?, ?, ?, ?)",
                            [session_id, seq, row_index, pair_id, label, at])
            now = _now()
            self._audit(cur, session_id, "restore", [r[:4] for r in rows], actor, now, batch=last[0])
            cur.execute("UPDATE sessions SET updated_at = ? WHERE session_id = ?", [now, session_id])
        return len(rows)

    def label_history(self, session_id: str) -> pd.DataFrame:
        """The audit trail: DataFrame(event, action, seq, row_index, pair_id, label, actor, happened_at, batch).

        ``action`` is one of `AUDIT_ACTIONS`; rows of one reset (and its restore) share ``batch``.
        """
        return self._fetch_df(
            "SELECT event, action, seq, row_index, pair_id, label, actor, happened_at, batch FROM label_audit "
            "WHERE session_id = ? ORDER BY event, seq", [session_id])

    def _audit(self, cur: duckdb.DuckDBPyConnection, session_id: str, action: str,
               rows: Sequence[Sequence[Any]], actor: str | None, at: datetime, *, batch: str = "",
               start: int | None = None) -> None:
        """Record one audit event per label row, inside the caller's transaction; ``start``: the
        session's next event number when the caller has already read it."""
        if actor is None:
            found = _first(cur.execute("SELECT user_name FROM sessions WHERE session_id = ?", [session_id]))
            actor = found[0] if found else ""
        if start is None:
            start = cur.execute(
                "SELECT coalesce(max(event) + 1, 0) FROM label_audit WHERE session_id = ?", [session_id]
            ).fetchall()[0][0]
        for k, (seq, row_index, pair_id, label) in enumerate(rows):
            cur.execute("INSERT INTO label_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [session_id, start + k, action, int(seq), int(row_index), str(pair_id), str(label),
                         str(actor), at, batch])

    def delete_session(self, session_id: str) -> None:
        """Delete a session and its labels."""
        with self._transaction() as (cur, _):
            self._require(cur, "sessions", "session_id", session_id, "session")
            cur.execute("DELETE FROM session_labels WHERE session_id = ?", [session_id])
            cur.execute("DELETE FROM label_notes WHERE session_id = ?", [session_id])
            cur.execute("DELETE FROM sessions WHERE session_id = ?", [session_id])

    def list_sessions(
        self, pool_id: str | None = None, *, user: str | None = None, session_id: str | None = None
    ) -> pd.DataFrame:
        """DataFrame(session_id, user, pool_id, ensemble_id, mode, persona, settings, n_labels, created_at, updated_at)."""
        frame = self._fetch_df(
            "SELECT s.session_id, s.user_name AS user, s.pool_id, s.ensemble_id, s.mode, s.persona, "
            "s.settings, (SELECT count(*) FROM session_labels l WHERE l.session_id = s.session_id) "
            "AS n_labels, s.created_at, s.updated_at FROM sessions s "
            "WHERE (? IS NULL OR s.pool_id = ?) AND (? IS NULL OR s.user_name = ?) "
            "AND (? IS NULL OR s.session_id = ?) ORDER BY s.created_at, s.session_id",
            [pool_id, pool_id, user, user, session_id, session_id],
        )
        frame["persona"] = frame["persona"].astype(object).where(frame["persona"] != "", None)
        frame["settings"] = [json.loads(s) for s in frame["settings"]]
        return frame



def _label_record(row: Sequence[Any]) -> LabelRecord:
    seq, row_index, pair_id, label, created_at = row
    return LabelRecord(seq=int(seq), row_index=int(row_index), pair_id=str(pair_id), label=str(label),
                       created_at=created_at)
