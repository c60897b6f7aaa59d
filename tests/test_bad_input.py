"""A corpus of bad (and awkward but valid) preference files, through the CLI.

Each file gets either a correct import (the expected number of judgements) or one
``error:`` line naming the problem with exit code 2, and on error the store is
exactly as it was. No traceback ever reaches the user.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyre_engine.cli import main
from hyre_engine.store import Store

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


def _jsonl(*rows) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def _row(i=0, **kw):
    return {"prompt": f"question {i}", "response_a": f"first answer {i}", "response_b": f"second answer {i}",
            "label": "a" if i % 2 else "b", **kw}


def _good(n=3):
    return [_row(i) for i in range(n)]


def _parquet(rows) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# (file name, content, expected): an int is the number of judgements a correct import
# holds; a string is a regex the one error line must match.
CORPUS: list[tuple[str, bytes, int | str]] = [
    ("empty.jsonl", b"", "empty"),
    ("blank.jsonl", b"\n\n  \n", "empty"),
    ("header_only.csv", b"prompt,response_a,response_b,label\n", "no rows"),
    ("wrong_columns.csv", b"foo,bar\n1,2\n", "missing column 'prompt'"),
    ("wrong_columns.jsonl", _jsonl({"foo": 1, "bar": 2}), "missing column"),
    ("non_utf8.csv", "prompt,response_a,response_b,label\nq,caf\u00e9,b,a\n".encode("latin-1"), "not valid UTF-8"),
    ("utf16.jsonl", _jsonl(*_good()).decode().encode("utf-16"), "not valid UTF-8"),
    ("binary.jsonl", bytes(range(256)) * 64, "not valid UTF-8|malformed"),
    ("garbage.parquet", b"PAR1" + os.urandom(2048), "not a readable Parquet"),
    ("zip_renamed.csv", b"PK\x03\x04" + os.urandom(512), "not valid UTF-8|malformed|fields|missing"),
    ("nested.json", _nested(100_000).encode(), "nested more than"),
    ("nested_meta.jsonl", (json.dumps(_row())[:-1] + ', "meta": ' + _nested(200) + "}\n").encode(), "nested more than"),
    ("nested_record.json", ("[" + json.dumps(_row())[:-1] + ', "m": ' + _nested(70) + "}]").encode(), "nested more than"),
    ("shallow_meta.jsonl", _jsonl(_row(meta={"a": {"b": [1, 2, {"c": 3}]}})), 1),
    ("huge_line.jsonl", _jsonl(_row(response_a="x" * (8 * MB))), 1),
    ("mb_texts.jsonl", _jsonl(*[_row(i, response_a=f"{i}" + "a" * MB, response_b=f"{i}" + "b" * MB) for i in range(3)]), 3),
    ("nan_label.jsonl", b'{"prompt": "p", "response_a": "x", "response_b": "y", "label": NaN}\n', "label must be"),
    ("nan_text.jsonl", b'{"prompt": "p", "response_a": NaN, "response_b": "y", "label": "a"}\n', "missing value"),
    ("infinity.jsonl", b'{"prompt": "p", "response_a": "x", "response_b": "y", "label": Infinity}\n', "label must be"),
    ("nan_rating.csv", b"user,item,rating,text\nu,i1,NaN,t1\nu,i2,3,t2\n", "rating must be a finite number"),
    ("nan_string.csv", b"prompt,response_a,response_b,label\nNaN,NaN,nan,a\n", 1),  # the literal text "NaN"
    ("identical_all.jsonl", _jsonl(_row(response_b="first answer 0")), "identical A and B"),
    ("identical_some.jsonl", _jsonl(*_good(), _row(9, response_a="same", response_b="same")), 3),
    ("nul.jsonl", _jsonl(_row(response_a="nul\x00inside"), _row(1)), 2),
    ("nul_only.jsonl", _jsonl(_row(response_a="\x00\x00")), "empty text"),
    ("bidi.jsonl", _jsonl(_row(response_a="safe\u202etxt.exe"), _row(1, group="g\u2066")), 2),
    ("huge_int.jsonl", _jsonl(*_good()) + b'{"prompt": "p", "x": ' + b"9" * 5000 + b"}\n", r"huge_int\.jsonl, line 4: .*too many digits"),
    ("huge_int.json", b'[{"prompt": "p",\n"x": ' + b"9" * 5000 + b"}]", r"huge_int\.json, line 2: .*too many digits"),
    ("bad_label.jsonl", _jsonl(_row(label="c")), "label must be 'a' or 'b'"),
    ("bool_label.jsonl", _jsonl(_row(label=True)), "label must be"),
    ("missing_prompt.jsonl", _jsonl({"response_a": "x", "response_b": "y", "label": "a"}), "missing column 'prompt'"),
    ("mixed_forms.jsonl", _jsonl(_row(chosen="x", rejected="y")), "mixes the two forms"),
    ("array_line.jsonl", b"[1, 2]\n", "expected a JSON object"),
    ("scalar.json", b'"hello"', "expected a list of objects"),
    ("malformed.jsonl", b'{"prompt": "p",}\n', r"line 1: malformed JSON"),
    ("truncated.json", json.dumps(_good())[:-10].encode(), "malformed JSON"),
    ("ragged.csv", b"prompt,response_a,response_b,label\nq,x,y\n", "expected 4 fields"),
    ("dup_header.csv", b"prompt,prompt,response_a,response_b,label\nq,q,x,y,a\n", "duplicate column"),
    ("corrupt.jsonl.gz", b"\x1f\x8b\x08\x00" + os.urandom(64), "not a readable gzip"),
    ("number_text.jsonl", _jsonl(_row(response_a=5)), "expected text, got int"),
    ("object_text.jsonl", _jsonl(_row(response_b={"a": 1})), "expected text, got dict"),
    ("list_group.jsonl", _jsonl(_row(group=["a"])), "expected a name or number"),
    ("duplicate.jsonl", _jsonl(_row(), _row()), "duplicate judgement"),
    ("pair_conflict.jsonl", _jsonl(_row(pair_id="p1"), _row(1, pair_id="p1")), "has different texts"),
    ("ratings_flat.csv", b"user,item,rating,text\nu,i1,3,t1\nu,i2,3,t2\n", "no user rated two items differently"),
    ("good.jsonl", _jsonl(*_good(5)), 5),
    ("good.csv", b"prompt,response_a,response_b,label\r\nq1,x,y,A\r\nq2,\"multi\r\nline\",z,b\r\n", 2),
    ("bom.csv", b"\xef\xbb\xbfprompt,chosen,rejected\nq,x,y\n", 1),
    ("good.parquet", _parquet(_good(4)), 4),
    ("good.jsonl.gz", gzip.compress(_jsonl(*_good(2))), 2),
    ("llmbar.json", json.dumps([{"input": "q", "output_1": "x", "output_2": "y", "label": 2}]).encode(), 1),
    ("hh.jsonl", _jsonl({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go"}), 1),
]


def _snapshot(db: Path) -> list[tuple]:
    with Store(db) as store:
        pools = store.list_pools()
        return sorted((r.name, int(r.n_pairs), int(r.n_labels)) for r in pools.itertuples())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for name, content, _ in CORPUS:
        (folder / name).write_bytes(content)
    return folder


def test_corpus_is_big_and_names_are_unique():
    names = [name for name, _, _ in CORPUS]
    assert len(names) >= 40 and len(set(names)) == len(names)
    assert sum(isinstance(e, str) for _, _, e in CORPUS) >= 30


@pytest.mark.parametrize(("name", "expected"), [(n, e) for n, _, e in CORPUS], ids=[n for n, _, _ in CORPUS])
def test_cli_import_is_correct_or_one_clear_error(tmp_path, corpus, capsys, name, expected):
    db = tmp_path / "store.duckdb"
    assert main(["import", str(corpus / "good.jsonl"), "--name", "existing", "--db", str(db)]) == 0
    before = _snapshot(db)
    capsys.readouterr()
    code = main(["import", str(corpus / name), "--name", "new", "--db", str(db)])
    out, err = capsys.readouterr()
    if isinstance(expected, int):
        assert code == 0, err
        after = dict((n, (p, lab)) for n, p, lab in _snapshot(db))
        assert after["new"][1] == expected
        assert ("cleaned:" in out) == any(k in name for k in ("nul", "bidi", "identical"))
    else:
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert re.search(expected, lines[0]), lines[0]
        assert name in lines[0], "the error names the file"
        assert _snapshot(db) == before, "the store is unchanged on error"


def test_missing_file_and_directory_are_errors(tmp_path, capsys):
    for target in (tmp_path / "nope.jsonl", tmp_path):
        assert main(["import", str(target), "--db", str(tmp_path / "s.duckdb")]) == 2
        assert capsys.readouterr().err.startswith("error: no such file")


def test_existing_name_needs_replace(tmp_path, corpus, capsys):
    db = str(tmp_path / "s.duckdb")
    assert main(["import", str(corpus / "good.jsonl"), "--name", "p", "--db", db]) == 0
    assert main(["import", str(corpus / "good.csv"), "--name", "p", "--db", db]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["import", str(corpus / "good.csv"), "--name", "p", "--db", db, "--replace"]) == 0
    assert dict((n, lab) for n, _, lab in _snapshot(Path(db)))["p"] == 2


def _cli(*args: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_extra}
    return subprocess.run([sys.executable, "-m", "hyre_engine", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


@pytest.mark.slow
def test_real_process_locked_store_and_nested_json_print_one_line(tmp_path, corpus):
    db = tmp_path / "locked.duckdb"
    Store(db).close()
    # A program that never hands the file over (a raw DuckDB connection, as the duckdb shell
    # holds it): HyRe processes take turns, so only such a holder can lock the CLI out.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, duckdb; c = duckdb.connect(sys.argv[1]); "
         "print('open', flush=True); time.sleep(60)", str(db)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        locked = _cli("import", str(corpus / "good.jsonl"), "--db", str(db), HYRE_LOCK_TIMEOUT="2")
    finally:
        holder.kill()
        holder.wait()
    nested = _cli("import", str(corpus / "nested.json"), "--db", str(tmp_path / "other.duckdb"))
    for result, words in ((locked, "in use by another process"), (nested, "nested more than")):
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], result.stderr
    time.sleep(0)
