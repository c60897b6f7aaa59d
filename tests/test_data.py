"""data.py: the canonical table, the three converters, and located errors for bad input."""

from __future__ import annotations

import gzip
import io
import json

import pandas as pd
import pytest

from hyre_engine.data import (
    CANONICAL_COLUMNS,
    DEFAULT_GROUP,
    DataError,
    content_pair_id,
    detect_format,
    group_label_counts,
    preferences_from_records,
    read_preferences,
    read_preferences_bytes,
    split_hh_transcript,
)

AB_ROWS = [
    {"prompt": "Capital of France?", "response_a": "Paris.", "response_b": "Lyon.", "label": "a", "source": "x"},
    {"prompt": "", "response_a": "Hi!", "response_b": "Go away.", "label": "B", "source": "y"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def chosen_winner(frame: pd.DataFrame) -> list[str]:
    return [r.response_a if r.label == "a" else r.response_b for r in frame.itertuples()]


# --- the design format --------------------------------------------------------------


def test_design_jsonl_canonical_columns_and_defaults(tmp_path):
    frame = read_preferences(write_jsonl(tmp_path / "pool.jsonl", AB_ROWS))
    assert list(frame.columns) == [*CANONICAL_COLUMNS, "source"]
    assert frame["label"].tolist() == ["a", "b"]  # "B" reads as "b"
    assert frame["group"].tolist() == [DEFAULT_GROUP] * 2
    assert frame["annotator"].tolist() == frame["group"].tolist()
    assert frame["source"].tolist() == ["x", "y"]
    assert frame.loc[0, "pair_id"] == content_pair_id("Capital of France?", "Paris.", "Lyon.")
    # the id ignores the response order: it names the unordered pair
    assert content_pair_id("q", "x", "y") == content_pair_id("q", "y", "x") != content_pair_id("p", "x", "y")


def test_csv_parquet_json_and_bytes_give_the_same_table(tmp_path):
    expected = read_preferences(write_jsonl(tmp_path / "pool.jsonl", AB_ROWS))
    pd.DataFrame(AB_ROWS).to_csv(tmp_path / "pool.csv", index=False)
    pd.DataFrame(AB_ROWS).to_parquet(tmp_path / "pool.parquet")
    (tmp_path / "pool.json").write_text(json.dumps(AB_ROWS))
    write_jsonl(tmp_path / "lines.json", AB_ROWS)  # JSONL content under a .json name
    csv_bytes = (tmp_path / "pool.csv").read_bytes()
    with open(tmp_path / "pool.parquet", "rb") as handle:  # a file object with a name
        from_handle = read_preferences(handle)
    for frame in (
        read_preferences(tmp_path / "pool.csv"),
        read_preferences(tmp_path / "pool.parquet"),
        read_preferences(tmp_path / "pool.json"),
        read_preferences(tmp_path / "lines.json"),
        read_preferences_bytes(csv_bytes, "upload.csv"),
        read_preferences_bytes(gzip.compress(csv_bytes), "upload.csv.gz"),
        from_handle,
    ):
        pd.testing.assert_frame_equal(frame, expected, check_dtype=False)


def test_chosen_rejected_order_is_randomised_per_pair_and_deterministic(tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(40)]
    path = write_jsonl(tmp_path / "cr.jsonl", rows)
    frame = read_preferences(path)
    assert chosen_winner(frame) == [f"good {i}" for i in range(40)]  # labels follow the texts
    assert 10 < (frame["label"] == "a").sum() < 30  # both positions are used
    pd.testing.assert_frame_equal(read_preferences(path), frame)  # deterministic
    other = read_preferences(path, seed=1)
    assert chosen_winner(other) == chosen_winner(frame)
    assert (other["label"] != frame["label"]).any()


def test_same_pair_in_several_groups_shares_one_ab_order(tmp_path):
    rows = [
        {"pair_id": "p1", "prompt": "q", "chosen": "x", "rejected": "y", "group": "alice"},
        {"pair_id": "p1", "prompt": "q", "chosen": "y", "rejected": "x", "group": "bob"},
        {"pair_id": "p2", "prompt": "q", "response_a": "u", "response_b": "v", "label": "a", "group": "alice"},
    ]
    frame = read_preferences(write_jsonl(tmp_path / "cr.jsonl", rows[:2]))
    assert frame["response_a"].nunique() == 1  # one orientation per pair_id
    assert chosen_winner(frame) == ["x", "y"]
    assert frame["annotator"].tolist() == ["alice", "bob"]
    # A/B form given in opposite orders: the second row is flipped to the first row's order
    ab = [
        {"pair_id": "p2", "prompt": "q", "response_a": "u", "response_b": "v", "label": "a", "group": "alice"},
        {"pair_id": "p2", "prompt": "q", "response_a": "v", "response_b": "u", "label": "a", "group": "bob"},
    ]
    flipped = read_preferences(write_jsonl(tmp_path / "ab.jsonl", ab))
    assert flipped["response_a"].tolist() == ["u", "u"]
    assert flipped["label"].tolist() == ["a", "b"]


# --- errors -------------------------------------------------------------------------


def raises_at(path_or_bytes, match, *, row, column, **kwargs) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        if isinstance(path_or_bytes, tuple):
            read_preferences_bytes(*path_or_bytes, **kwargs)
        else:
            read_preferences(path_or_bytes, **kwargs)
    assert (info.value.row, info.value.column) == (row, column)
    return info.value


def test_missing_column_is_named(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "label"} for r in AB_ROWS]
    err = raises_at(write_jsonl(tmp_path / "p.jsonl", rows), r"p\.jsonl, column 'label': missing column 'label'",
                    row=None, column="label")
    assert err.path.endswith("p.jsonl")
    # a JSONL record lacking a key another record has
    rows = [AB_ROWS[0], {k: v for k, v in AB_ROWS[1].items() if k != "response_b"}]
    raises_at(write_jsonl(tmp_path / "q.jsonl", rows), "line 2, column 'response_b': missing column",
              row=2, column="response_b")
    raises_at((b"prompt,chosen\nq,x\n", "cr.csv"), "missing column 'rejected'", row=None, column="rejected")


def test_empty_files(tmp_path):
    (tmp_path / "e.jsonl").write_bytes(b"\n  \n")
    raises_at(tmp_path / "e.jsonl", "the file is empty", row=None, column=None)
    raises_at((b"prompt,response_a,response_b,label\n", "h.csv"), "no rows", row=None, column=None)
    raises_at((b"[]", "l.json"), "no rows", row=None, column=None)


def test_label_not_a_or_b_names_line_and_column(tmp_path):
    csv_text = "prompt,response_a,response_b,label\nq,x,y,a\nq2,x,y,c\n"
    raises_at((csv_text.encode(), "p.csv"), r"p\.csv, line 3, column 'label': label must be 'a' or 'b', got 'c'",
              row=3, column="label")


def test_non_utf8_bytes_name_the_line():
    data = b"prompt,response_a,response_b,label\nq,x,y,a\n" + b"q,caf\xe9,y,b\n"
    raises_at((data, "latin1.csv"), r"line 3: not valid UTF-8 \(byte 0xe9", row=3, column=None)


def test_duplicate_judgement_and_conflicting_texts(tmp_path):
    rows = [
        {"pair_id": "p1", "prompt": "q", "response_a": "x", "response_b": "y", "label": "a", "group": "g"},
        {"pair_id": "p2", "prompt": "q", "response_a": "x", "response_b": "z", "label": "a", "group": "g"},
        {"pair_id": "p1", "prompt": "q", "response_a": "x", "response_b": "y", "label": "b", "group": "g"},
    ]
    raises_at(write_jsonl(tmp_path / "d.jsonl", rows), "line 3, column 'pair_id': duplicate judgement.*already at line 1",
              row=3, column="pair_id")
    # another annotator in the same group is fine
    rows[2]["annotator"] = "someone"
    assert len(read_preferences(write_jsonl(tmp_path / "ok.jsonl", rows))) == 3
    rows[2]["response_b"] = "different"
    raises_at(write_jsonl(tmp_path / "t.jsonl", rows), "pair_id 'p1' has different texts than at line 1",
              row=3, column="response_a")
    rows[2]["prompt"] = "another prompt"
    raises_at(write_jsonl(tmp_path / "u.jsonl", rows), "different texts", row=3, column="prompt")


def test_empty_text_null_and_nan(tmp_path):
    rows = [dict(AB_ROWS[0]), dict(AB_ROWS[1], response_a="   ")]
    raises_at(write_jsonl(tmp_path / "e.jsonl", rows), "line 2, column 'response_a': empty text", row=2, column="response_a")
    rows[1]["response_a"] = None
    raises_at(write_jsonl(tmp_path / "n.jsonl", rows), r"missing value \(null / NaN\)", row=2, column="response_a")
    (tmp_path / "nan.jsonl").write_text(json.dumps(AB_ROWS[0]) + "\n" + json.dumps(AB_ROWS[1]).replace('"Hi!"', "NaN"))
    raises_at(tmp_path / "nan.jsonl", "null / NaN", row=2, column="response_a")
    rows[1]["response_a"] = 42
    raises_at(write_jsonl(tmp_path / "i.jsonl", rows), "expected text, got int", row=2, column="response_a")
    frame = pd.DataFrame(AB_ROWS)
    frame.loc[1, "prompt"] = None
    frame.to_parquet(tmp_path / "n.parquet")
    raises_at(tmp_path / "n.parquet", "record 2, column 'prompt': missing value", row=2, column="prompt")


def test_malformed_json_and_csv_name_the_line(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps(AB_ROWS[0]) + "\n\n" + '{"prompt": "q", oops}\n')
    raises_at(tmp_path / "m.jsonl", r"line 3: malformed JSON", row=3, column=None)
    (tmp_path / "l.jsonl").write_text(json.dumps(AB_ROWS[0]) + "\n[1, 2]\n")
    raises_at(tmp_path / "l.jsonl", "line 2: expected a JSON object, got list", row=2, column=None)
    # a quoted field spanning two lines: the error names the record's own first line
    text = 'prompt,response_a,response_b,label\n"two\nlines",x,y,a\nq,x,y\n'
    raises_at((text.encode(), "f.csv"), "line 4: expected 4 fields, found 3", row=4, column=None)


def test_mixed_forms_size_limit_and_unknown_format(tmp_path):
    rows = [dict(AB_ROWS[0], chosen="x", rejected="y")]
    raises_at(write_jsonl(tmp_path / "m.jsonl", rows), "mixes the two forms", row=None, column="chosen")
    path = write_jsonl(tmp_path / "big.jsonl", AB_ROWS)
    raises_at(path, "over the limit of 10 bytes", row=None, column=None, max_bytes=10)
    bomb = gzip.compress(b" " * 100_000)
    raises_at((bomb, "bomb.jsonl.gz"), "decompressed data is over the limit", row=None, column=None, max_bytes=50_000)
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        read_preferences(path, format="xml")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_preferences(tmp_path / "absent.jsonl")


# --- HH-RLHF ------------------------------------------------------------------------


def hh(turns: str, last: str) -> str:
    return turns + "\n\nAssistant: " + last


def test_split_hh_transcript_multi_turn():
    context = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke."
    prompt, chosen, rejected = split_hh_transcript(hh(context, "Why did the chicken..."), hh(context, "No."))
    assert prompt == "Human: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke."
    assert (chosen, rejected) == ("Why did the chicken...", "No.")
    # a response that itself contains turns is split at the last *shared* Assistant turn
    weird = "Sure.\n\nHuman: thanks\n\nAssistant: welcome"
    prompt, chosen, rejected = split_hh_transcript(hh(context, weird), hh(context, "No."))
    assert prompt.endswith("Tell me a joke.") and chosen == weird
    with pytest.raises(ValueError, match="no"):
        split_hh_transcript("\n\nHuman: x", "\n\nHuman: y")


def test_hh_rlhf_jsonl_gz(tmp_path):
    context = "\n\nHuman: What is 2+2?"
    rows = [
        {"chosen": hh(context, "4."), "rejected": hh(context, "5.")},
        {"chosen": hh("\n\nHuman: Hi", "Hello, how can I help?"), "rejected": hh("\n\nHuman: Hi", "")},
    ]
    path = tmp_path / "helpful-base_test.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    frame = read_preferences(path, group="helpful")
    assert frame.attrs["format"] == "hh-rlhf"
    assert frame["prompt"].tolist() == ["Human: What is 2+2?", "Human: Hi"]
    assert chosen_winner(frame) == ["4.", "Hello, how can I help?"]
    assert set(frame.loc[1, ["response_a", "response_b"]]) == {"Hello, how can I help?", ""}  # empty turn kept
    assert frame["group"].tolist() == ["helpful", "helpful"]
    bad = [rows[0], {"chosen": "\n\nHuman: x", "rejected": "\n\nHuman: y"}]
    raises_at(write_jsonl(tmp_path / "bad.jsonl", bad), "line 2, column 'chosen'.*Assistant", row=2, column="chosen",
              format="hh-rlhf")


# --- LLMBar -------------------------------------------------------------------------


def test_llmbar_json_gz(tmp_path):
    rows = [
        {"input": "Say hi.", "output_1": "Hi!", "output_2": "Bye.", "label": 1},
        {"input": "Say bye.", "output_1": "Hi!", "output_2": "Bye.", "label": 2},
    ]
    path = tmp_path / "LLMBar_Natural.json.gz"
    path.write_bytes(gzip.compress(json.dumps(rows, indent=2).encode()))
    frame = read_preferences(path)
    assert frame.attrs["format"] == "llmbar"
    assert frame["label"].tolist() == ["a", "b"]
    assert frame["response_a"].tolist() == ["Hi!", "Hi!"] and frame["prompt"].tolist() == ["Say hi.", "Say bye."]
    rows[1]["label"] = 3
    path.write_bytes(gzip.compress(json.dumps(rows).encode()))
    raises_at(path, "record 2, column 'label': label must be 1 or 2, got 3", row=2, column="label")


# --- per-user ratings ---------------------------------------------------------------

RATINGS_CSV = """user,item,rating,text,age
u1,i1,1,calm text,30
u1,i2,3,rude text,30
u1,i3,3,nasty text,30
u2,i1,4,calm text,50
u2,i2,2,rude text,50
"""


def test_ratings_become_user_pairs():
    frame = read_preferences_bytes(RATINGS_CSV.encode(), "ratings.csv", question="Which text is more offensive?")
    assert frame.attrs["format"] == "ratings"
    # u1: (i1, i2), (i1, i3); not (i2, i3), a tie. u2: (i1, i2)
    assert frame["group"].tolist() == ["u1", "u1", "u2"]
    assert frame["annotator"].tolist() == frame["group"].tolist()
    assert chosen_winner(frame) == ["rude text", "nasty text", "calm text"]
    assert set(frame["prompt"]) == {"Which text is more offensive?"}
    # the same item pair judged by two users shares its id (and its A/B order)
    assert frame.loc[0, "pair_id"] == frame.loc[2, "pair_id"] != frame.loc[1, "pair_id"]
    assert frame.loc[0, "response_a"] == frame.loc[2, "response_a"]
    assert frame["age"].tolist() == ["30", "30", "50"]  # a per-user column is kept
    assert {"item_a", "item_b", "rating_a", "rating_b"} <= set(frame.columns)


def test_ratings_cap_is_deterministic_and_per_user():
    lines = ["user,item,rating,text"] + [f"u{u},i{i},{(i * 7 + u) % 5},text {i}" for u in range(2) for i in range(12)]
    data = "\n".join(lines).encode()
    full = read_preferences_bytes(data, "r.csv")
    capped = read_preferences_bytes(data, "r.csv", max_pairs_per_user=5)
    assert capped["group"].value_counts().to_dict() == {"u0": 5, "u1": 5}
    assert set(capped["pair_id"] + capped["group"]) <= set(full["pair_id"] + full["group"])
    pd.testing.assert_frame_equal(capped, read_preferences_bytes(data, "r.csv", max_pairs_per_user=5))
    # u0's sample does not depend on the other users in the file
    only_u0 = "\n".join(lines[:13]).encode()
    pd.testing.assert_frame_equal(
        read_preferences_bytes(only_u0, "r.csv", max_pairs_per_user=5),
        capped[capped["group"] == "u0"],
    )


def test_ratings_errors_and_custom_columns():
    popquorn = "instance_id,user_id,text,offensiveness\n7,0,hello,1.0\n8,0,idiot,4.0\n"
    frame = read_preferences_bytes(popquorn.encode(), "p.csv", format="ratings", user_col="user_id",
                                   item_col="instance_id", rating_col="offensiveness")
    assert chosen_winner(frame) == ["idiot"] and frame.loc[0, "group"] == "0"
    raises_at((RATINGS_CSV.replace("u2,i2,2", "u2,i2,lots").encode(), "r.csv"),
              "line 6, column 'rating': rating must be a finite number, got 'lots'", row=6, column="rating")
    raises_at((RATINGS_CSV.replace("u2,i2,2,rude", "u2,i1,2,calm").encode(), "r.csv"), "rated item 'i1' twice",
              row=6, column="item")
    raises_at((RATINGS_CSV.replace("u2,i1,4,calm", "u2,i1,4,other").encode(), "r.csv"),
              "item 'i1' has a different text than at line 2", row=5, column="text")


def test_detect_format_and_records():
    assert detect_format(["input", "output_1", "output_2", "label"]) == "llmbar"
    assert detect_format(["chosen", "rejected"], {"chosen": "\n\nHuman: a\n\nAssistant: b"}) == "hh-rlhf"
    assert detect_format(["user", "item", "rating", "text"]) == "ratings"
    assert detect_format(["prompt", "chosen", "rejected"]) == "design"
    frame = preferences_from_records(AB_ROWS)
    assert frame["label"].tolist() == ["a", "b"]
    with pytest.raises(DataError, match="record 2: expected an object"):
        preferences_from_records([AB_ROWS[0], "nope"])


def test_reads_from_a_binary_buffer_with_a_name():
    buffer = io.BytesIO(RATINGS_CSV.encode())
    buffer.name = "upload.csv"
    assert len(read_preferences(buffer)) == 3


def test_group_label_counts_per_group_in_first_seen_order():
    frame = pd.DataFrame({"group": ["g2", "g1", "g2", "g2", "g1"], "label": ["a", "b", "b", "a", "b"]})
    counts = group_label_counts(frame)
    assert list(counts.columns) == ["group", "judgements", "share_a"]
    assert counts["group"].tolist() == ["g2", "g1"]
    assert counts["judgements"].tolist() == [3, 2]
    assert counts["share_a"].tolist() == pytest.approx([2 / 3, 0.0])
    with pytest.raises(ValueError, match=r"needs columns \['label'\]"):
        group_label_counts(frame.drop(columns="label"))


# --- hostile and dirty input ----------------------------------------------------------

from hyre_engine.data import MAX_JSON_DEPTH, describe_cleaning, json_depth, loads_json  # noqa: E402


def _row(**kw):
    return {"prompt": "p", "response_a": "x", "response_b": "y", "label": "a", **kw}


def test_nul_and_bidi_are_removed_and_counted():
    frame = preferences_from_records([
        _row(prompt="p\x00q", response_a="x\u202ey"),
        _row(prompt="r", response_b="z\u2066", group="g\x01"),
        _row(prompt="s"),
    ])
    assert list(frame["prompt"]) == ["pq", "r", "s"]
    assert frame["response_a"][0] == "xy" and frame["response_b"][1] == "z" and frame["group"][1] == "g"
    assert frame.attrs["cleaned"] == {"control_characters": 2, "bidi_controls": 2, "identical_pairs": 0}
    assert "NUL" in describe_cleaning(frame) and "bidirectional" in describe_cleaning(frame)
    assert not frame.map(lambda v: isinstance(v, str) and ("\x00" in v or "\u202e" in v)).any().any()


def test_identical_pairs_are_dropped_and_counted():
    frame = preferences_from_records([_row(), _row(prompt="q", response_a="same", response_b="same"),
                                      _row(prompt="r", response_a="s\u202e", response_b="s")])
    assert len(frame) == 1 and frame.attrs["cleaned"]["identical_pairs"] == 2
    assert "identical" in describe_cleaning(frame)
    with pytest.raises(DataError, match="identical A and B"):
        preferences_from_records([_row(response_b="x")])


def test_clean_input_reports_nothing():
    assert describe_cleaning(preferences_from_records([_row()])) is None


def test_huge_integer_names_file_and_line(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps(_row()) + "\n" + '{"prompt": "p", "n": ' + "9" * 5000 + "}\n")
    with pytest.raises(DataError, match=r"big\.jsonl, line 2: .*too many digits"):
        read_preferences(path)
    path = tmp_path / "big.json"
    path.write_text("[\n" + json.dumps(_row()) + ',\n{"n": ' + "9" * 5000 + "}]")
    with pytest.raises(DataError, match=r"big\.json, line 3: .*too many digits"):
        read_preferences(path)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000, 200_000])
def test_deep_json_is_a_data_error_never_recursion(tmp_path, depth):
    doc = {**_row(), "meta": json.loads("[" * min(depth, 500) + "]" * min(depth, 500))} if depth <= 500 else None
    text = json.dumps(doc) if doc else '{"meta": ' + "[" * depth + "]" * depth + "}"
    for suffix, body in ((".jsonl", text + "\n"), (".json", "[" + text + "]")):
        path = tmp_path / f"deep{suffix}"
        path.write_text(body)
        with pytest.raises(DataError, match="nested more than"):
            read_preferences(path)


def test_json_depth_and_loads_json():
    assert json_depth(1) == 0 and json_depth([]) == 1 and json_depth({"a": [[1]]}) == 3
    assert json_depth(json.loads("[" * 100 + "]" * 100), limit=10) == 11
    assert loads_json('{"a": [1]}') == {"a": [1]}
    with pytest.raises(DataError, match="x.json, line 1: malformed JSON"):
        loads_json("{", name="x.json")


# --- frames built in code: validate_frame, the one check the store relies on --------

GOOD_FRAME = {"pair_id": ["p0", "p0", "p1"], "prompt": ["q0", "q0", "q1"],
              "response_a": ["a0", "a0", "a1"], "response_b": ["b0", "b0", "b1"],
              "label": ["a", "b", None], "group": ["u1", "u2", "u1"]}


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        ([GOOD_FRAME], "must be a pandas DataFrame, got list"),
        (pd.DataFrame(GOOD_FRAME).drop(columns=["response_b"]), r"missing required columns \['response_b'\]"),
        (pd.DataFrame(GOOD_FRAME).iloc[0:0], "no rows"),
        (pd.concat([pd.DataFrame(GOOD_FRAME), pd.DataFrame({"group": [1, 2, 3]})], axis=1),
         r"duplicated column names \['group'\]"),
        (pd.DataFrame(GOOD_FRAME).assign(prompt=["q0", None, "q1"]), r"column 'prompt' has missing values in rows 1"),
        (pd.DataFrame(GOOD_FRAME).assign(label=["a", "x", "B"]), r"label must be one of .* got 'x', 'B'"),
        (pd.DataFrame(GOOD_FRAME).assign(response_a=["a0", "other", "a1"]), "pair_id 'p0' appear with different"),
    ],
)
def test_validate_frame_names_the_problem(frame, match):
    from hyre_engine.data import validate_frame

    with pytest.raises(ValueError, match=match):
        validate_frame(frame)


def test_validate_frame_passes_what_the_readers_return(tmp_path):
    from hyre_engine.data import validate_frame

    good = pd.DataFrame(GOOD_FRAME)
    assert validate_frame(good) is good
    frame = read_preferences(write_jsonl(tmp_path / "pool.jsonl", AB_ROWS))
    assert validate_frame(frame) is frame


def test_the_store_validates_frames_with_data_py(monkeypatch):
    """One place for the checks: the store calls data.validate_frame and has none of its own."""
    import hyre_engine.store.connection as connection
    from hyre_engine.store import MEMORY, Store

    seen = []
    monkeypatch.setattr(connection, "validate_frame", lambda frame: seen.append(len(frame)) or frame)
    with Store(MEMORY) as store:
        pool = store.add_pool("p", pd.DataFrame(GOOD_FRAME))
        store.add_pairs(pool, pd.DataFrame(GOOD_FRAME))
    assert seen == [3, 3]
