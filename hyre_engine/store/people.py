"""The people who label: who they are (from their sessions), and renaming, merging and deleting them.

A user exists through their sessions; profiles carry the name too. Every label that
leaves a session through a merge or a delete is kept in the audit trail ("delete",
with who and when), and a merge re-adds it to the target's session ("add").
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from hyre_engine.store.connection import StoreBase, _check_name, _first, _now

USER_COLUMNS = ("user", "n_labels", "n_persona_labels", "n_sessions", "n_pools", "first_seen", "last_active")


class PeopleMixin(StoreBase):
    """Store methods: users of the sessions; rename, merge and delete."""

    def list_users(self) -> pd.DataFrame:
        """DataFrame(USER_COLUMNS): per user, labels in their own sessions and as a persona, last active."""
        return self._fetch_df(
            "SELECT s.user_name AS user, "
            "count(l.seq) FILTER (WHERE s.mode = 'human') AS n_labels, "
            "count(l.seq) FILTER (WHERE s.mode = 'persona') AS n_persona_labels, "
            "count(DISTINCT s.session_id) AS n_sessions, count(DISTINCT s.pool_id) AS n_pools, "
            "min(s.created_at) AS first_seen, max(s.updated_at) AS last_active "
            "FROM sessions s LEFT JOIN session_labels l ON l.session_id = s.session_id "
            "GROUP BY s.user_name ORDER BY last_active DESC, user"
        )

    def merge_users(self, source: str, target: str, *, actor: str = "") -> dict[str, int]:
        """Give all of ``source``'s sessions, labels, notes and profiles to ``target``; ``source`` is gone.

        Where both have a session on the same pool, ensemble and persona, ``source``'s labels
        join the end of ``target``'s in their order; a pair ``target`` already judged keeps
        ``target``'s judgement (counted in ``conflicts``). Returns {sessions_moved,
        labels_moved, conflicts}. KeyError when ``source`` has no session.
        """
        _check_user(source, "source")
        _check_user(target, "target")
        if source == target:
            raise ValueError("cannot merge a user into themselves")
        out = {"sessions_moved": 0, "labels_moved": 0, "conflicts": 0}
        with self._transaction() as (cur, _):
            sessions = self._user_sessions(cur, source)
            for session_id, pool_id, ensemble_id, mode, persona in sessions:
                twin = _first(cur.execute(
                    "SELECT session_id FROM sessions WHERE user_name = ? AND pool_id = ? AND ensemble_id = ? "
                    "AND mode = ? AND persona = ?", [target, pool_id, ensemble_id, mode, persona]))
                if twin is None:
                    cur.execute("UPDATE sessions SET user_name = ?, updated_at = ? WHERE session_id = ?",
                                [target, _now(), session_id])
                    out["sessions_moved"] += 1
                    continue
                moved, conflicts = self._merge_session(cur, session_id, twin[0], actor or target)
                out["labels_moved"] += moved
                out["conflicts"] += conflicts
            cur.execute(
                "UPDATE profiles SET user_name = ? WHERE user_name = ? AND ensemble_id NOT IN "
                "(SELECT ensemble_id FROM profiles WHERE user_name = ?)", [target, source, target])
            cur.execute("DELETE FROM profiles WHERE user_name = ?", [source])
        return out

    def rename_user(self, old: str, new: str, *, actor: str = "") -> dict[str, int]:
        """Rename a user (sessions, labels, notes and profiles follow); ValueError when ``new`` is taken."""
        _check_user(new, "new name")
        if new != old and _first(self._cursor().execute(
                "SELECT 1 FROM sessions WHERE user_name = ? UNION SELECT 1 FROM profiles WHERE user_name = ?",
                [new, new])) is not None:
            raise ValueError(f"a user named {new!r} already exists: merge into them instead")
        if new == old:
            return {"sessions_moved": 0, "labels_moved": 0, "conflicts": 0}
        return self.merge_users(old, new, actor=actor)

    def delete_user(self, user: str, *, actor: str = "") -> int:
        """Delete a user's sessions, notes and profiles; returns how many labels left.

        The labels stay in the audit trail as "delete" events (soft delete, with who and when).
        """
        _check_user(user, "user")
        removed = 0
        with self._transaction() as (cur, _):
            for session_id, *_ in self._user_sessions(cur, user):
                rows = cur.execute(
                    "SELECT seq, row_index, pair_id, label FROM session_labels WHERE session_id = ? ORDER BY seq",
                    [session_id]).fetchall()
                self._audit(cur, session_id, "delete", rows, actor or user, _now())
                removed += len(rows)
                for table in ("session_labels", "label_notes", "sessions"):
                    cur.execute(f"DELETE FROM {table} WHERE session_id = ?", [session_id])
            cur.execute("DELETE FROM profiles WHERE user_name = ?", [user])
        return removed

    def _user_sessions(self, cur: duckdb.DuckDBPyConnection, user: str) -> list[tuple[Any, ...]]:
        rows = cur.execute(
            "SELECT session_id, pool_id, ensemble_id, mode, persona FROM sessions WHERE user_name = ? "
            "ORDER BY created_at, session_id", [user]).fetchall()
        if not rows and _first(cur.execute("SELECT 1 FROM profiles WHERE user_name = ?", [user])) is None:
            raise KeyError(f"no user named {user!r}")
        return rows

    def _merge_session(self, cur: duckdb.DuckDBPyConnection, source: str, target: str, actor: str) -> tuple[int, int]:
        """Append ``source``'s labels and notes to ``target`` (a judged pair keeps target's); drop ``source``."""
        rows = cur.execute(
            "SELECT seq, row_index, pair_id, label, created_at FROM session_labels WHERE session_id = ? "
            "ORDER BY seq", [source]).fetchall()
        taken = {r[0] for r in cur.execute(
            "SELECT row_index FROM session_labels WHERE session_id = ?", [target]).fetchall()}
        seq = cur.execute("SELECT coalesce(max(seq) + 1, 0) FROM session_labels WHERE session_id = ?",
                          [target]).fetchall()[0][0]
        now, added = _now(), []
        for _, row_index, pair_id, label, created_at in rows:
            if row_index in taken:
                continue
            cur.execute("INSERT INTO session_labels VALUES (?, ?, ?, ?, ?, ?)",
                        [target, seq, row_index, pair_id, label, created_at])
            added.append((seq, row_index, pair_id, label))
            taken.add(row_index)
            seq += 1
        self._audit(cur, source, "delete", [r[:4] for r in rows], actor, now, batch=f"merge:{target}")
        self._audit(cur, target, "add", added, actor, now, batch=f"merge:{source}")
        cur.execute(
            "INSERT INTO label_notes SELECT ?, row_index, pair_id, comment, flagged, actor, updated_at "
            "FROM label_notes n WHERE n.session_id = ? AND n.row_index NOT IN "
            "(SELECT row_index FROM label_notes WHERE session_id = ?)", [target, source, target])
        for table in ("session_labels", "label_notes", "sessions"):
            cur.execute(f"DELETE FROM {table} WHERE session_id = ?", [source])
        cur.execute("UPDATE sessions SET updated_at = ? WHERE session_id = ?", [now, target])
        return len(added), len(rows) - len(added)


def _check_user(name: Any, what: str) -> str:
    _check_name(name, what)
    if name != " ".join(name.split()):
        raise ValueError(f"{what} {name!r} has surrounding or repeated whitespace")
    return name
