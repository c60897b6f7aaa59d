"""Keyboard: the shortcut keys (one definition), the `?` help overlay, and the page script.

Streamlit's own button shortcuts already ignore keys typed into a field. What the
script adds, in the browser:
- a text field (the sidebar's name) gives focus back to the page when Enter commits
  it, so the next A or B labels instead of typing into the name;
- 1 and 2 press the A and B buttons, and ? opens the help overlay;
- none of its keys fire while the focus is in an input, a textarea, a select or
  anything contenteditable.
"""

from __future__ import annotations

import streamlit as st

# Keys of the Label page's buttons (st.button shortcut=; "C" and "R" are Streamlit's own).
SHORTCUTS = {
    "a": "A", "b": "B", "tie": "T", "both_bad": "X", "cant_judge": "J", "skip": "S",
    "undo": "U", "step": "N", "play": "P",
}
# Keys the page script adds: key -> the button it presses (by its Streamlit key).
ALIASES = {"1": "btn_a", "2": "btn_b", "?": "btn_keys"}
# What the overlay lists, in reading order.
HELP_ROWS = (
    ("A or 1", "Response A is better"),
    ("B or 2", "Response B is better"),
    ("T", "Tie: both equally good (no evidence for the heads)"),
    ("X", "Both bad (no evidence for the heads)"),
    ("J", "Can't judge (no evidence for the heads)"),
    ("S", "Skip: not asked again"),
    ("U", "Undo the last answer"),
    ("P", "Persona demo: play / pause"),
    ("N", "Persona demo: one label"),
    ("?", "This list"),
    ("Enter", "In the name field: save the name and give the keys back to the page"),
)

_SCRIPT = """
<script>
(function () {
  if (window.__hyreKeys) return;
  window.__hyreKeys = true;
  var ALIASES = %(aliases)s;
  function typing(t) {
    if (!t) return false;
    if (t.isContentEditable) return true;
    var tag = (t.tagName || "").toUpperCase();
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  }
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (typing(t)) {
      // Enter commits a one-line text field (Streamlit's own handler); leave the field so
      // the next shortcut key labels instead of typing into it.
      if (e.key === "Enter" && (t.tagName || "").toUpperCase() === "INPUT" && t.type === "text") {
        setTimeout(function () { t.blur(); }, 0);
      }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    var key = ALIASES[e.key];
    if (!key) return;
    var button = document.querySelector(".st-key-" + key + " button");
    if (button && !button.disabled) {
      e.preventDefault();
      button.click();
    }
  }, true);
})();
</script>
"""


def install_keyboard() -> None:
    """Add the page script (once per browser tab; later reruns find it installed)."""
    import json

    st.html(_SCRIPT % {"aliases": json.dumps(ALIASES)}, unsafe_allow_javascript=True)


@st.dialog("Keyboard shortcuts")
def _help_dialog() -> None:
    st.markdown("\n".join(["| key | what it does |", "|---|---|"] + [f"| **{k}** | {v} |" for k, v in HELP_ROWS]))
    st.caption("Keys never act while you type in a field. Press Esc to close.")


def keyboard_help_button(where) -> None:
    """A small "Keys (?)" button that opens the overlay; the ? key presses it."""
    if where.button("Keys (?)", key="btn_keys", type="tertiary", icon=":material/keyboard:",
                    help="All keyboard shortcuts (key ?)"):
        _help_dialog()
