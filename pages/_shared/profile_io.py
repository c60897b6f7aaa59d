"""The Profiles page's import and export rules: who may export what, and an import that
never replaces a profile without a confirmation."""

from __future__ import annotations

import streamlit as st

from hyre_engine import profiles as prof
from hyre_engine.profiles import Profile, WeightSource
from pages._shared import signin
from pages._shared.context import Context
from pages._shared.widgets import escape_markdown

IMPORTED_KEY = "profiles_imported"  # the user name of the profile just imported, shown once


def _import(ctx: Context, profile: Profile) -> None:
    if not signin.can("import_profile"):
        return
    ctx.store.save_profile(
        user=profile.user, ensemble_id=ctx.ensemble_id, weights=profile.weights, labels=profile.labels,
        meta=prof.stored_meta(profile, "import", created_at=profile.created_at),
    )
    st.session_state[IMPORTED_KEY] = profile.user


def own_or_shared(source: WeightSource, user: str) -> bool:
    """What an annotator may export: their own session or profile, a persona, the uniform weights."""
    return source.kind not in ("session", "profile") or source.name == user


def import_button(ctx: Context, profile: Profile) -> None:
    """Import, after a confirmation when a profile of that name exists for this ensemble."""
    existing = ctx.store.get_profile(profile.user, ctx.ensemble_id)
    confirmed = True
    if existing is not None:
        st.warning(f"A profile of **{escape_markdown(profile.user)}** already exists for this ensemble "
                   f"({len(existing.labels)} labels). Importing replaces it.",
                   icon=":material/warning:")
        confirmed = st.checkbox("Replace the existing profile", key=f"profiles_replace:{profile.user}")
    st.button("Import", key="profiles_import", type="primary", on_click=_import, args=(ctx, profile),
              disabled=not confirmed)
