"""pages/_shared without a browser: the Data page's file helpers, the Evaluate page's form
helpers and charts, the Explore page's axis table (no AppTest: tests/app holds those)."""

from __future__ import annotations

import io
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hyre_engine import auth
from hyre_engine.auth import AuthError
from hyre_engine.data import DataError
from hyre_engine.pca import EndContrast
from hyre_engine.pipeline import BuildConfig
from pages._shared import charts, data_io, evaluation, signin_routes
from pages._shared.widgets import axis_table, snippet

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- sign-in cookie routes


def test_the_session_route_swaps_a_code_once_for_an_httponly_cookie(monkeypatch):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    monkeypatch.setattr(auth, "SIGN_IN_CODES", auth.CodeExchange())
    client = TestClient(Starlette(routes=signin_routes.routes()), follow_redirects=False)
    code = auth.SIGN_IN_CODES.issue("the-token")
    for asked, sets in ((code, True), (code, False), ("forged", False), ("", False)):
        response = client.get(f"/{signin_routes.SESSION_PATH}", params={"code": asked})
        assert response.status_code == 303 and response.headers["location"] == "/"
        assert response.headers["cache-control"] == "no-store"
        cookie = response.headers.get("set-cookie", "")
        assert cookie.startswith(f"{auth.SESSION_COOKIE}=the-token;") is sets, (asked, cookie)
        if sets:
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
            assert "Secure" not in cookie  # plain http on loopback
    behind_proxy = client.get(f"/{signin_routes.SESSION_PATH}", headers={"x-forwarded-proto": "https"},
                              params={"code": auth.SIGN_IN_CODES.issue("t2")})
    assert "Secure" in behind_proxy.headers["set-cookie"]


def test_the_signout_route_takes_only_a_post_with_the_apps_xsrf_token():
    from starlette.applications import Starlette
    from starlette.testclient import TestClient
    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

    client = TestClient(Starlette(routes=signin_routes.routes()), follow_redirects=False)
    path = f"/{signin_routes.SIGNOUT_PATH}"
    token = bytes(range(16))
    cookie = generate_xsrf_token_string(token)  # what Streamlit sets as _streamlit_xsrf
    client.cookies.set("_streamlit_xsrf", cookie)
    # the same token masked anew (as the frontend may send it), then refusals
    good = generate_xsrf_token_string(token)
    assert good != cookie
    assert client.get(path).status_code == 405  # a link or an image elsewhere signs nobody out
    for header in (None, "", generate_xsrf_token_string(bytes(16)), "not a token"):
        refused = client.post(path, headers={} if header is None else {"X-Xsrftoken": header})
        assert refused.status_code == 403 and "set-cookie" not in refused.headers, header
        assert "XSRF" in refused.text
    out = client.post(path, headers={"X-Xsrftoken": good})
    assert out.status_code == 204 and out.headers["cache-control"] == "no-store"
    assert out.headers["set-cookie"].startswith(f'{auth.SESSION_COOKIE}="";')
    client.cookies.clear()
    assert client.post(path, headers={"X-Xsrftoken": good}).status_code == 403  # no cookie to match


# ---------------------------------------------------------------- Data page


def test_upload_limit_matches_server_config():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == data_io.MAX_UPLOAD_MB


def test_read_upload_counts_and_errors(design_csv):
    frame = data_io.read_upload(design_csv(), "prefs.csv", format="auto")
    info = data_io.summarize(frame)
    assert (info.rows, info.pairs, info.groups, info.annotators, info.format) == (24, 12, 2, 2, "design")
    counts = data_io.group_counts(frame).set_index("group")
    assert counts.loc["g1", "judgements"] == 12
    # g1 prefers the short answer; the page shows the share of "A preferred" as read
    assert 0 <= counts.loc["g1", "A preferred"] <= 1
    assert list(data_io.preview_table(frame, rows=5).columns[:4]) == ["prompt", "response_a", "response_b", "label"]
    assert len(data_io.preview_table(frame, rows=5)) == 5

    with pytest.raises(DataError, match=r"wrong\.csv.*missing column 'label'") as err:
        data_io.read_upload(b"prompt,response_a,response_b\nq,x,y\n", "wrong.csv", format="auto")
    assert err.value.column == "label"
    with pytest.raises(DataError, match="not valid UTF-8") as err:
        data_io.read_upload(b"prompt,response_a,response_b,label\nq,\xff\xfe,y,a\n", "latin.csv", format="auto")
    assert err.value.row == 2
    with pytest.raises(DataError, match="empty"):
        data_io.read_upload(b"", "empty.jsonl", format="auto")
    with pytest.raises(DataError, match=r"big\.csv is 0\.0 MB: uploads are limited"):
        data_io.read_upload(b"x" * 101, "big.csv", format="auto", max_bytes=100)


def test_size_error_and_pool_name():
    assert data_io.size_error("a.csv", data_io.MAX_UPLOAD_BYTES, data_io.MAX_UPLOAD_BYTES, upload=True) is None
    message = data_io.size_error("a.csv", data_io.MAX_UPLOAD_BYTES + 1, data_io.MAX_UPLOAD_BYTES, upload=True)
    assert "50 MB" in message and "maxUploadSize" in message
    assert data_io.default_pool_name("/x/prefs.jsonl.gz") == "prefs"


def test_read_path_errors(tmp_path, design_csv):
    inside = tmp_path / "data"
    inside.mkdir()
    with pytest.raises(AuthError, match="no file 'missing.csv'"):
        data_io.read_path(str(inside / "missing.csv"), format="auto", allowed=[inside])
    with pytest.raises(FileNotFoundError, match="type the path"):
        data_io.read_path("  ", format="auto", allowed=[inside])
    big = inside / "big.csv"
    big.write_bytes(design_csv())
    with pytest.raises(DataError, match="files are limited"):
        data_io.read_path(str(big), format="auto", allowed=[inside], max_bytes=10)
    assert len(data_io.read_path("big.csv", format="auto", allowed=[inside])) == 24


def test_read_path_outside_the_data_folders_tells_nothing(tmp_path, design_csv):
    inside, outside = tmp_path / "data", tmp_path / "secret"
    inside.mkdir()
    outside.mkdir()
    (outside / "prefs.csv").write_bytes(design_csv())
    (inside / "link.csv").symlink_to(outside / "prefs.csv")
    messages = set()
    for path in [outside / "prefs.csv", outside / "missing.csv", inside / "link.csv",
                 inside / ".." / "secret" / "prefs.csv", "/etc/passwd", "/proc/self/maps"]:
        with pytest.raises(AuthError) as exc:
            data_io.read_path(str(path), format="auto", allowed=[inside])
        messages.add(str(exc.value))
    assert messages == {"that path is outside the configured data folders"}
    with pytest.raises(AuthError, match="path import is off"):
        data_io.read_path(str(outside / "prefs.csv"), format="auto", allowed=[])


# ---------------------------------------------------------------- Evaluate page


def _result(groups=("g1", "g2")) -> dict:
    n = [0, 1, 5]
    return {
        "n": n,
        "groups": {
            g: {"n_examples": 10, "methods": {"hyre": {"mean": [0.5, 0.6, 0.8], "std": [0.0, 0.1, 0.05]},
                                              "uniform": {"mean": [0.5, 0.5, 0.5], "std": [0, 0, 0]}},
                "effective_heads": {"mean": [20.0, 15.0, 5.0], "std": [0, 1, 1]}}
            for g in groups
        },
        "summary": {"hyre": {"mean": [0.5, 0.6, 0.8], "std_over_groups": [0, 0, 0]},
                    "uniform": {"mean": [0.5, 0.5, 0.5], "std_over_groups": [0, 0, 0]}},
    }


def test_a_build_job_reads_in_plain_words():
    from hyre_engine import jobs
    from pages._shared import build_jobs

    job = jobs.Job(job_id="j", db_path="x.duckdb", pool_id="p", pool_name="my *pool*",
                   settings={"kind": "shared", "n_heads": 100, "finetune": {"epochs": 1}},
                   stages=jobs.JOB_STAGES, started_by="kim", started_at=0.0)
    assert build_jobs.describe(job) == "shared · K = 100 · fine-tuned backbone on pool **my \\*pool\\***"
    assert build_jobs.progress_text(job) == "Loading the embedding model…"
    assert build_jobs.progress_text(replace(job, stage="train", done=1200, total=3000)) == (
        "Training the heads: 1,200 / 3,000 steps")
    tuned = replace(job, stage="finetune", done=2, total=9, detail="epoch 1/3, step 2/3 · about 1 min left")
    assert build_jobs.progress_text(tuned) == (
        "Fine-tuning the backbone with the heads: epoch 1/3, step 2/3 · about 1 min left")


def test_parse_n_values():
    assert evaluation.parse_n_values("10, 0,1 , 5,5") == [0, 1, 5, 10]
    with pytest.raises(ValueError, match="'x' is not a whole number"):
        evaluation.parse_n_values("0, x")
    with pytest.raises(ValueError, match="0 or more"):
        evaluation.parse_n_values("-1")
    with pytest.raises(ValueError, match="at least one"):
        evaluation.parse_n_values(" , ")


def test_result_key_depends_on_every_option():
    base = {"pool_id": "p", "n_values": [0, 1], "seeds": 5, "methods": ["hyre"]}
    key = evaluation.result_key(**base)
    assert key == evaluation.result_key(**dict(reversed(list(base.items()))))  # order-free
    assert key.startswith(evaluation.RESULT_PREFIX)
    for change in ({"seeds": 6}, {"n_values": [0, 2]}, {"methods": ["uniform"]}, {"pool_id": "q"}):
        assert evaluation.result_key(**{**base, **change}) != key, change


def test_curves_figure_has_a_band_and_a_line_per_method():
    result = _result()
    fig = charts.curves_figure(result["n"], result["groups"]["g1"]["methods"])
    lines = [t for t in fig.data if t.fill is None]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert [t.name for t in lines] == ["HyRe", "Uniform ensemble"]  # the legend's order
    assert len(bands) == 2
    hyre_band = next(t for t in bands if t.legendgroup == "hyre")
    # upper edge left to right, then lower edge back: mean +- std, clipped to [0, 1]
    np.testing.assert_allclose(hyre_band.y, [0.5, 0.7, 0.85, 0.75, 0.5, 0.5])
    with pytest.raises(ValueError, match="2 means for 3 values of n"):
        charts.curves_figure([0, 1, 5], {"hyre": {"mean": [0.5, 0.6], "std": [0, 0]}})


def test_a_grid_chart_has_its_title_and_no_legend_to_run_over_it():
    # the Evaluate page's per-group charts: with every method a half-width legend wrapped to
    # five rows over the title; the summary chart above carries the one legend
    result = _result()
    summary = charts.curves_figure(result["n"], result["summary"])
    grid = charts.curves_figure(result["n"], result["groups"]["g1"]["methods"], title="g1 · 3 labelled pairs",
                                legend=False)
    assert summary.layout.showlegend is not False
    assert grid.layout.showlegend is False and grid.layout.title.text == "g1 · 3 labelled pairs"


def test_result_csv_and_summary_table():
    result = _result()
    frame = pd.read_csv(io.StringIO(evaluation.result_csv(result)))
    # 2 groups x 2 methods x 3 n, plus 2 summary methods x 3 n
    assert len(frame) == 2 * 2 * 3 + 2 * 3
    row = frame[(frame["group"] == "g2") & (frame["method"] == "hyre") & (frame["n"] == 1)].iloc[0]
    assert (row["mean"], row["std"]) == (0.6, 0.1)
    table = evaluation.summary_table(result)
    assert list(table.index) == ["HyRe", "Uniform ensemble"]
    assert list(table.columns) == ["n=0", "n=1", "n=5"]
    assert table.attrs["effective_heads"] == [20.0, 15.0, 5.0]


def test_the_summary_table_names_methods_short_and_its_help_gives_the_long_form():
    # "Probe (logistic regression on the embedding difference)" was cut at 1280 px
    stats = {"mean": [0.5, 0.6, 0.7], "std": [0.0, 0.0, 0.0]}
    result = {"n": [0, 1, 5], "groups": {}, "summary": {m: stats for m in ("hyre", "probe", "user_ceiling", "residual")}}
    table = evaluation.summary_table(result)
    assert list(table.index) == ["HyRe", "Uniform + personal head", "Probe", "Per-user fit (upper bound)"]
    assert max(len(name) for name in table.index) <= 26
    text = evaluation.method_help(table)
    assert "Probe = Probe (logistic regression on the embedding difference)" in text
    assert "Per-user fit (upper bound) = Per-user fit on half the rows (upper bound)" in text
    assert "HyRe =" not in text  # a name shown whole needs no long form
    assert "Short names" not in evaluation.method_help(evaluation.summary_table(_result()))


def test_config_for_an_ensemble_finds_the_same_ensemble():
    # the page rebuilds a stored ensemble's config from its settings to find it again
    record = {"config": BuildConfig(n_heads=20, hidden=32, train_groups=["crowd"]).ensemble_settings()}
    config = BuildConfig.from_settings(record["config"], backbone=None, train_groups=["crowd"])
    assert config.reproduces(record["config"])
    assert config.n_heads == 20 and config.train_groups == ["crowd"]


def test_embedded_backbone_is_told_by_its_name():
    assert evaluation.is_embedded_backbone("all-MiniLM-L6-v2@abc/max256")
    assert not evaluation.is_embedded_backbone("my-encoder@abc")


# ---------------------------------------------------------------- Explore page


def test_axis_table_reads_what_each_end_favours():
    contrasts = [
        EndContrast("words", ((1.5, 2),), ((6.0, 2),)),
        EndContrast("style", (("short", 2),), (("thorough", 1), ("short", 1))),
    ]
    table = axis_table(contrasts).set_index("attribute")
    assert table.loc["style", "+ end favours"] == "short ×2"
    assert table.loc["style", "− end favours"] == "thorough ×1, short ×1"
    assert table.loc["words (mean)", "+ end favours"] == "2"  # (2 + 1) / 2 rounds to 2
    assert table.loc["words (mean)", "− end favours"] == "6"


def test_snippet_cuts_long_text_on_one_line():
    assert snippet("a\n b") == "a b"
    assert snippet("x" * 200, 10) == "x" * 9 + "…"


def test_production_config_is_local_and_shows_no_tracebacks():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["client"]["showErrorDetails"] == "none"


def test_nothing_references_an_outside_host():
    """The favicon is a local file and no page, style or the app names a CDN or font host."""
    files = [REPO / "app.py", REPO / "assets" / "style.css", *sorted((REPO / "pages").rglob("*.py"))]
    hosts = ("fonts.googleapis", "fonts.gstatic", "cdn.", "jsdelivr", "unpkg", "cdnjs", "twemoji")
    for file in files:
        text = file.read_text()
        assert not [h for h in hosts if h in text], file
        assert "page_icon=\":" not in text, f"{file}: an emoji or :material: favicon comes from a CDN"
    assert (REPO / "assets" / "favicon.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
