"""Profiles page: each person's weight vector, who is alike, profile files, and scoring.

A profile is a weight vector over the ensemble's heads plus the labels it came
from. It is tied to one ensemble (its fingerprint): weights index heads, so a
profile from another ensemble is refused. Scoring ranks candidate responses by
a profile's personalised reward, sum_k w_k r_k, next to the uniform ensemble's
(personalised best-of-n reranking).
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import streamlit as st

from hyre_engine import profiles as prof
from hyre_engine.profiles import (
    PERSONA_LABELS,
    ProfileError,
    Ranking,
    Weights,
    WeightSource,
)
from pages._shared import charts, profile_io, signin
from pages._shared.charts import COLOR_MOVED_ROW
from pages._shared.context import (
    Context,
    ensemble_fingerprint,
    ensemble_model,
    get_context,
    scoring_backbone,
)
from pages._shared.labels import LABEL_TEXT, MEASURE_TEXT
from pages._shared.widgets import escape_markdown, snippet, source_picker

# The heatmap stays readable up to about this many rows; later sources are left out.
MAX_COMPARE = 30
# Candidate responses in the scorer: best-of-n with n from 2 to 8.
CANDIDATE_RANGE = (2, 8)
DEFAULT_CANDIDATES = 3
# Labels listed under a profile (the newest last); the export holds all of them.
SHOWN_LABELS = 50

VIEW_SOURCE_KEY = "profiles_view_source"
COMPARE_KEY = "profiles_compare_measure"
EXPORT_SOURCE_KEY = "profiles_export_source"
EXPORT_NAME_KEY = "profiles_export_name"
UPLOAD_KEY = "profiles_upload"
SCORE_SOURCE_KEY = "profiles_score_source"
N_CANDIDATES_KEY = "profiles_n_candidates"
PROMPT_KEY = "profiles_prompt"
SCORES_KEY = "profiles_scores"


def _candidate_key(i: int) -> str:
    return f"profiles_candidate_{i}"


# ---------------------------------------------------------------- sections


def _users_section(ctx: Context) -> None:
    st.caption(
        "A user's weights come from replaying their labelling session (with its β) through HyRe, "
        f"or from a saved profile; a persona's from its labels on the first {PERSONA_LABELS} "
        "pool pairs it judged."
    )
    chosen = source_picker(ctx, "Whose weights", key=VIEW_SOURCE_KEY, width=420)
    w = chosen.weights
    m = st.columns(4)
    m[0].metric("Labels", len(chosen.labels))
    m[1].metric("Effective heads", f"{chosen.effective_heads:.1f} / {w.size}")
    m[2].metric("Heaviest head", f"{chosen.heaviest}", help=f"weight {w[chosen.heaviest]:.3f}")
    m[3].metric("β", f"{chosen.beta:g}", help="The temperature of w_k ∝ exp(-β · errors_k).")
    cols = st.columns([3, 2], gap="large")
    with cols[0]:
        st.plotly_chart(charts.profile_weights_figure(w), key="profiles_weights_chart", config=charts.PLOTLY_CONFIG)
    with cols[1]:
        if chosen.labels:
            pairs = ctx.pairs()
            rows = chosen.labels[-SHOWN_LABELS:]
            index = dict(zip(pairs["pair_id"], pairs["row_index"], strict=True))
            # the prompt, free text, last: a narrow screen cuts its end, never the judgement
            table = pd.DataFrame(
                {
                    "pair": [int(index.get(r["pair_id"], -1)) + 1 for r in rows],
                    "preferred": [LABEL_TEXT.get(r["label"], r["label"]) for r in rows],
                    "prompt": [
                        snippet(pairs.iloc[index[r["pair_id"]]]["prompt"]) if r["pair_id"] in index else "?"
                        for r in rows
                    ],
                }
            )
            st.markdown(f"**Labels** ({len(chosen.labels)})")
            st.dataframe(table, hide_index=True, key="profiles_labels_table", height=charts.CHART_HEIGHT)
        else:
            st.info("No labels: these are the uniform weights.")


def _compare_section(ctx: Context) -> None:
    sources = [s for s in ctx.sources() if s.kind != prof.UNIFORM_KEY][:MAX_COMPARE]
    if len(sources) < 2:
        st.info("Comparing needs at least two users, profiles or personas.")
        return
    measure = st.segmented_control(
        "Compare by", list(MEASURE_TEXT), format_func=MEASURE_TEXT.get, default="cosine", required=True,
        key=COMPARE_KEY,
    )
    st.caption(
        "Cosine similarity of two weight vectors: 1 when they weigh the heads alike. "
        "Same choice: the share of pool pairs on which the two personalised models prefer the "
        "same response."
    )
    names = _unique_names(sources)
    matrix = prof.compare(measure, [ctx.weights_of(s).weights for s in sources], ctx.arrays().logits)
    cols = st.columns([3, 2], gap="large")
    with cols[0]:
        st.plotly_chart(charts.similarity_figure(names, matrix, measure), key="profiles_similarity_chart",
                        config=charts.PLOTLY_CONFIG)
    with cols[1]:
        nearest, score = prof.most_alike(matrix)
        # the score before the second name: at 1280 px the table's right end is cut
        table = pd.DataFrame(
            {"who": names, "score": score, "most alike": [names[j] for j in nearest.tolist()]}
        ).sort_values("score", ascending=False, kind="stable")
        st.markdown("**Who is most alike**")
        st.dataframe(table, hide_index=True, key="profiles_alike_table",
                     column_config={"score": st.column_config.NumberColumn(format="%.2f")})


def _unique_names(sources: list[WeightSource]) -> list[str]:
    names, seen = [], {}
    for s in sources:
        base = f"{s.name} · {s.kind}"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base} {seen[base]}")
    return names


def _save_profile(ctx: Context, user: str, chosen: Weights) -> None:
    ctx.store.save_profile(
        user=user, ensemble_id=ctx.ensemble_id, weights=chosen.weights, labels=chosen.labels,
        meta=prof.stored_meta(chosen, chosen.source.key),
    )


def _files_section(ctx: Context) -> None:
    fp = ensemble_fingerprint(ctx.db_path, ctx.ensemble_id)
    cols = st.columns(2, gap="large")
    with cols[0], st.container(border=True, key="profiles-export"):
        st.markdown("**Export a profile**")
        everyone = signin.can("export_all")
        chosen = source_picker(ctx, "Weights to export", key=EXPORT_SOURCE_KEY,
                               only=None if everyone else lambda s: profile_io.own_or_shared(s, ctx.user))
        if chosen.source.kind == prof.UNIFORM_KEY:
            st.caption("The uniform weights need no profile: pick a user or a persona.")
        else:
            name = st.text_input(
                "Save as user", value=chosen.source.name if everyone else ctx.user, max_chars=prof.MAX_USER_CHARS,
                key=f"{EXPORT_NAME_KEY}:{chosen.source.key}", disabled=not everyone,
                help=None if everyone else "You save and export profiles under your own name.",
            )
            user = prof.clean_user(name)
            doc = prof.profile_document(chosen, user=user, ensemble_id=ctx.ensemble_id, ensemble_fingerprint=fp,
                                        backbone_id=ctx.backbone_id)
            buttons = st.container(horizontal=True)
            buttons.download_button(
                "Download JSON", data=json.dumps(doc, indent=1), file_name=f"hyre-profile-{user}.json",
                mime="application/json", icon=":material/download:", key="profiles_download",
                on_click="ignore",
            )
            buttons.button(
                "Save in HyRe Studio", key="profiles_save", icon=":material/save:",
                on_click=_save_profile, args=(ctx, user, chosen),
                help="Keep these weights as a profile of this ensemble (overwrites one of the same name).",
            )
            head = (f"personal head (λ = {chosen.lam:g}" + (f", structured prior ρ = {chosen.rho:g})" if chosen.rho else ")")
                    if chosen.v is not None else "HyRe only")
            st.caption(f"{len(chosen.labels)} labels · {head} · ensemble fingerprint `{fp}`")
    with cols[1], st.container(border=True, key="profiles-import"):
        st.markdown("**Import a profile**")
        if not signin.can("import_profile"):
            signin.refuse("Importing a profile (it can replace anyone's)")
            return
        upload = st.file_uploader(
            "Profile JSON", type=["json"], key=UPLOAD_KEY, max_upload_size=prof.MAX_PROFILE_MB,
            help=f"A file exported here, up to {prof.MAX_PROFILE_MB} MB. It must come from this "
            "ensemble (same fingerprint) and label only pairs of this pool.",
        )
        done = st.session_state.pop(profile_io.IMPORTED_KEY, None)
        if done:
            st.success(f"Imported the profile of **{escape_markdown(done)}**.")
        if upload is not None:
            try:
                profile = prof.parse_profile(upload.getvalue(), n_heads=ctx.n_heads, ensemble_fingerprint=fp,
                                             backbone_id=ctx.backbone_id, dim=ctx.dim, pair_ids=ctx.pair_ids())
            except ProfileError as exc:
                st.error(str(exc), icon=":material/block:")
            else:
                st.markdown(
                    f"**{escape_markdown(profile.user)}** · {len(profile.labels)} labels · "
                    f"effective heads {profile.effective_heads:.1f} / {ctx.n_heads}"
                    + (" · with a personal head" if profile.v is not None else " · HyRe only")
                )
                profile_io.import_button(ctx, profile)


def _score_section(ctx: Context) -> None:
    st.caption(
        "Type a prompt and candidate responses: each is scored by every head, then ranked by the "
        "profile's personalised reward (Σ w_k r_k, plus v · φ(response) when it has a personal head) "
        "and by the uniform ensemble (mean r_k). Picking the top one is personalised best-of-n."
    )
    example_prompt, examples = prof.example_candidates(ctx.pairs(), CANDIDATE_RANGE[1])
    st.session_state.setdefault(PROMPT_KEY, example_prompt)
    chosen = source_picker(ctx, "Rank with the weights of", key=SCORE_SOURCE_KEY, width=420)
    st.text_area("Prompt", key=PROMPT_KEY, height=80)
    n = st.number_input("Candidates", *CANDIDATE_RANGE, value=DEFAULT_CANDIDATES, step=1, key=N_CANDIDATES_KEY, width=160)
    cols = st.columns(min(int(n), 4))
    for i in range(int(n)):
        st.session_state.setdefault(_candidate_key(i), examples[i] if i < len(examples) else "")
        cols[i % len(cols)].text_area(f"Candidate {i + 1}", key=_candidate_key(i), height=140)
    prompt = st.session_state[PROMPT_KEY]
    candidates = [st.session_state[_candidate_key(i)] for i in range(int(n))]
    inputs = hashlib.sha256(json.dumps([prompt, candidates]).encode()).hexdigest()
    if st.button("Rank candidates", key="profiles_rank", type="primary", icon=":material/sort:"):
        if any(not c.strip() for c in candidates):
            st.warning("Every candidate needs some text.")
        else:
            try:
                backbone = scoring_backbone(ctx.backbone_id, ctx.ensemble.meta.backbone_path)
            except (ValueError, FileNotFoundError) as exc:
                st.error(str(exc))
                return
            model = ensemble_model(ctx.db_path, ctx.ensemble_id)
            with st.spinner("Scoring…"):
                rewards, embeddings = prof.candidate_rewards(model, backbone, prompt, candidates)
            st.session_state[SCORES_KEY] = (inputs, rewards, embeddings)
    stored = st.session_state.get(SCORES_KEY)
    if stored is None or stored[0] != inputs:
        return
    ranked = prof.rank_candidates(stored[1], chosen.weights, v=chosen.v, embeddings=stored[2])
    _ranking(ranked, candidates, chosen.source.name)


def _ranking(ranked: Ranking, candidates: list[str], who: str) -> None:
    best_p, best_u = ranked.best_personalised, ranked.best_uniform
    who_md = escape_markdown(who)
    if best_p != best_u:
        st.success(
            f"**{who_md}'s** reward picks **candidate {best_p}**; the uniform ensemble would pick "
            f"candidate {best_u}.",
            icon=":material/swap_vert:",
        )
    else:
        st.info(f"Both **{who_md}'s** reward and the uniform ensemble pick **candidate {best_p}**.")

    def moved(d: int) -> str:
        return "=" if d == 0 else (f"▲ {d}" if d > 0 else f"▼ {-d}")

    # the response, free text, last: a narrow screen cuts its end, never "vs uniform"
    table = pd.DataFrame(
        {
            "rank": ranked.personalised_rank,
            "candidate": ranked.candidate,
            "vs uniform": [moved(d) for d in ranked.moved.tolist()],
            f"{who} reward": ranked.personalised,
            "uniform rank": ranked.uniform_rank,
            "uniform reward": ranked.uniform,
            "response": [snippet(candidates[c - 1]) for c in ranked.candidate.tolist()],
        }
    )

    def highlight(row: pd.Series) -> list[str]:
        changed = row["vs uniform"] != "="
        return [f"background-color: {COLOR_MOVED_ROW}" if changed else ""] * len(row)

    st.dataframe(
        table.style.apply(highlight, axis=1).format(
            {f"{who} reward": "{:+.3f}", "uniform reward": "{:+.3f}"}
        ),
        hide_index=True, key="profiles_rank_table",
    )
    st.caption("Rows in amber moved against the uniform ensemble's ranking (▲ up, ▼ down).")


def main() -> None:
    ctx = get_context()
    if ctx is None:
        return
    st.markdown("### Profiles")
    st.caption(
        "A profile is a person's weights over the reward heads. Compare people, move a profile "
        "between installs, and use it to rank new responses."
    )
    tabs = st.tabs(["People", "Compare", "Export / import", "Score responses"])
    with tabs[0]:
        _users_section(ctx)
    with tabs[1]:
        _compare_section(ctx)
    with tabs[2]:
        _files_section(ctx)
    with tabs[3]:
        _score_section(ctx)


main()
