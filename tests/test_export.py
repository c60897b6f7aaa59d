"""Export of people's labels: TRL / RewardBench, the pair format, a saved datasets.Dataset.

A real DuckDB file with a small pool and two users' sessions; the files written are
read back with pandas, ``hyre_engine.data`` and ``datasets`` (local files only).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hyre_engine import export
from hyre_engine.numerics import NO_PREFERENCE, PAIR_LABELS

N_PAIRS = 8


@pytest.fixture
def store(tmp_path):
    from hyre_engine.store import Store

    ids = [f"p{i}" for i in range(N_PAIRS)]
    frame = pd.DataFrame({
        "pair_id": ids, "prompt": [f"question {i}" for i in range(N_PAIRS)],
        "response_a": [f"first answer {i}" for i in range(N_PAIRS)],
        "response_b": [f"second answer {i}" for i in range(N_PAIRS)],
        "label": ["a"] * N_PAIRS, "group": "crowd",
    })
    db = Store(tmp_path / "export.duckdb")
    pool_id = db.add_pool("pool one", frame)
    db.put_ensemble(ensemble_id="e", pool_id=pool_id, backbone_id="t",
                    config={"kind": "t", "n_heads": 3}, weights=b"\0", train_fingerprint="t")
    db.put_head_predictions("e", pool_id, np.zeros((N_PAIRS, 3), dtype=np.float32))
    kim = db.get_or_create_session(user="kim", pool_id=pool_id, ensemble_id="e")
    for row, label in enumerate(["a", "b", "tie", "both_bad", "cant_judge", "skip"]):
        db.add_session_label(kim, row_index=row, pair_id=ids[row], label=label)
    lee = db.get_or_create_session(user="lee", pool_id=pool_id, ensemble_id="e")
    db.add_session_label(lee, row_index=0, pair_id="p0", label="b")
    persona = db.get_or_create_session(user="kim", pool_id=pool_id, ensemble_id="e",
                                       mode="persona", persona="crowd")
    db.add_session_label(persona, row_index=7, pair_id="p7", label="a")
    with db:
        yield db


def test_every_judgement_lands_in_exactly_one_place(store):
    rows = export.judgements(store)
    assert len(rows) == 7  # kim's six and lee's one; the persona is left out by default
    prefs, other = export.split_judgements(rows)
    assert set(prefs["judgement"]) <= set(PAIR_LABELS) and set(other["judgement"]) <= set(NO_PREFERENCE)
    assert len(prefs) + len(other) == len(rows)
    assert sorted(other["judgement"]) == sorted(NO_PREFERENCE)
    assert len(export.judgements(store, include_personas=True)) == 8
    with pytest.raises(ValueError, match="unknown judgement values \\['maybe'\\]"):
        export.split_judgements(rows.assign(judgement="maybe"))


def test_trl_rows_put_the_chosen_side_first(store):
    trl = export.to_trl(export.judgements(store, user="kim"))
    assert list(trl.columns[:3]) == ["prompt", "chosen", "rejected"]
    by_pair = trl.set_index("pair_id")
    assert by_pair.loc["p0", "chosen"] == "first answer 0"  # kim chose A
    assert by_pair.loc["p1", "chosen"] == "second answer 1"  # kim chose B
    assert by_pair.loc["p1", "rejected"] == "first answer 1"
    assert set(trl["annotator"]) == {"kim"}


def test_export_writes_each_format_and_reads_back(store, tmp_path):
    import datasets

    from hyre_engine.data import read_preferences

    report = export.export_labels(store, tmp_path / "out", pool="pool one")
    assert (report.n_preferences, report.n_no_preference, report.n_users, report.n_pools) == (3, 4, 2, 1)
    assert set(report.paths) == {*export.FORMATS, "no_preference"}

    # TRL JSONL through datasets' own json loader (a local file, no hub)
    trl = datasets.load_dataset("json", data_files=str(report.paths["trl-jsonl"]), split="train")
    assert trl.num_rows == 3 and {"prompt", "chosen", "rejected"} <= set(trl.column_names)
    assert sorted(trl["annotator"]) == ["kim", "kim", "lee"]
    parquet = pd.read_parquet(report.paths["trl-parquet"])
    assert parquet[["prompt", "chosen", "rejected"]].values.tolist() == [
        [r["prompt"], r["chosen"], r["rejected"]] for r in trl
    ]
    saved = datasets.load_from_disk(str(report.paths["dataset"]))
    assert saved.num_rows == 3 and saved.column_names == trl.column_names

    # the pair format keeps every judgement; the preferences read back as this project's input
    pairs = [json.loads(line) for line in report.paths["pairs-jsonl"].read_text().splitlines()]
    assert len(pairs) == 7 and {p["judgement"] for p in pairs} == {*PAIR_LABELS, *NO_PREFERENCE}
    assert all(p["label"] is None for p in pairs if p["judgement"] in NO_PREFERENCE)
    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(json.dumps(p) + "\n" for p in pairs if p["label"] is not None))
    back = read_preferences(clean)
    assert sorted(back["group"]) == ["kim", "kim", "lee"]

    other = [json.loads(line) for line in report.paths["no_preference"].read_text().splitlines()]
    assert sorted(o["judgement"] for o in other) == sorted(NO_PREFERENCE)


def test_one_user_per_pool_names_its_files(store, tmp_path):
    report = export.export_labels(store, tmp_path, user="lee", formats=["trl-jsonl"])
    assert report.paths == {"trl-jsonl": tmp_path / "labels-lee-all.trl.jsonl"}
    assert report.n_no_preference == 0
    assert export.export_name(user="a b/../c", pool=None) == "labels-a_b_.._c-all"


def test_bad_requests_fail_before_writing(store, tmp_path):
    out = tmp_path / "nothing"
    with pytest.raises(ValueError, match="formats must be among"):
        export.export_labels(store, out, formats=["csv"])
    with pytest.raises(ValueError, match="no user named 'nobody'"):
        export.export_labels(store, out, user="nobody")
    with pytest.raises(ValueError, match="no pool named 'missing'"):
        export.export_labels(store, out, pool="missing")
    assert not out.exists()


def test_a_user_relabelling_a_pair_in_another_session_keeps_the_latest(store):
    pool_id = store.get_pool("pool one").pool_id
    store.put_ensemble(ensemble_id="e2", pool_id=pool_id, backbone_id="t",
                       config={"kind": "t", "n_heads": 3}, weights=b"\0", train_fingerprint="t2")
    again = store.get_or_create_session(user="lee", pool_id=pool_id, ensemble_id="e2")
    store.add_session_label(again, row_index=0, pair_id="p0", label="a")
    rows = export.judgements(store, user="lee")
    assert rows["judgement"].tolist() == ["a"]


def test_the_export_command_writes_the_files_and_names_bad_input(store, tmp_path, capsys):
    from hyre_engine.cli import main

    db = store.path
    store.close()  # the command opens the file itself
    out = tmp_path / "cli"
    assert main(["export", "--db", db, "--out", str(out), "--user", "kim",
                 "--formats", "trl-jsonl,pairs-jsonl"]) == 0
    printed = capsys.readouterr().out
    assert "exported 2 preferences and 4 judgements without a preferred side" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "labels-kim-all.no_preference.jsonl", "labels-kim-all.pairs.jsonl", "labels-kim-all.trl.jsonl",
    ]
    assert main(["export", "--db", db, "--out", str(out), "--formats", "xml"]) == 2
    assert "formats must be among" in capsys.readouterr().err


def test_comments_and_flags_travel_in_every_format(store, tmp_path):
    kim = store.list_sessions(user="kim").query("mode == 'human'")["session_id"].iloc[0]
    store.set_note(kim, row_index=1, pair_id="p1", comment="B cites a source", flagged=True)
    store.set_note(kim, row_index=2, pair_id="p2", comment='tie, "really"')
    report = export.export_labels(store, tmp_path, user="kim", formats=["trl-jsonl", "pairs-jsonl"])
    trl = pd.read_json(report.paths["trl-jsonl"], lines=True).set_index("pair_id")
    assert trl.loc["p1", "comment"] == "B cites a source" and bool(trl.loc["p1", "flagged"])
    assert trl.loc["p0", "comment"] == "" and not trl.loc["p0", "flagged"]
    other = pd.read_json(report.paths["no_preference"], lines=True).set_index("pair_id")
    assert other.loc["p2", "comment"] == 'tie, "really"' and not other.loc["p2", "flagged"]
    lines = [json.loads(line) for line in report.paths["pairs-jsonl"].read_text().splitlines()]
    assert {(r["pair_id"], r["comment"], r["flagged"]) for r in lines if r["comment"]} == {
        ("p1", "B cites a source", True), ("p2", 'tie, "really"', False)}


def test_notes_on_pairs_not_labelled_go_to_their_own_file(store, tmp_path):
    kim = store.list_sessions(user="kim").query("mode == 'human'")["session_id"].iloc[0]
    store.set_note(kim, row_index=6, pair_id="p6", comment="never judged: the question is unclear", flagged=True)
    store.set_note(kim, row_index=1, pair_id="p1", comment="on a label")
    store.delete_session_label(kim, 0)  # a note outlives its label's deletion
    store.set_note(kim, row_index=0, pair_id="p0", flagged=True)
    notes = export.unlabelled_notes(store, user="kim")
    assert notes[["pair_id", "comment", "flagged"]].values.tolist() == [
        ["p6", "never judged: the question is unclear", True], ["p0", "", True]]
    assert list(notes.columns) == list(export.UNLABELLED_NOTE_COLUMNS)
    assert notes["prompt"].tolist() == ["question 6", "question 0"] and set(notes["annotator"]) == {"kim"}

    report = export.export_labels(store, tmp_path, user="kim", formats=["trl-jsonl", "pairs-jsonl"])
    assert report.n_unlabelled_notes == 2 and "2 note(s) on pairs not labelled" in report.summary()
    written = [json.loads(line) for line in report.paths["unlabelled_notes"].read_text().splitlines()]
    assert [(r["pair_id"], r["flagged"]) for r in written] == [("p6", True), ("p0", True)]
    assert written[0]["noted_at"][:4].isdigit() and written[0]["pool"] == "pool one"
    # no judgement file holds them: they are no judgement
    for fmt in ("trl-jsonl", "pairs-jsonl"):
        ids = {json.loads(line)["pair_id"] for line in report.paths[fmt].read_text().splitlines()}
        assert "p6" not in ids and "p0" not in ids
    assert export.file_bytes(notes, "unlabelled_notes") == report.paths["unlabelled_notes"].read_bytes()
    # lee has no note: no notes file
    assert "unlabelled_notes" not in export.export_labels(store, tmp_path / "lee", user="lee").paths
