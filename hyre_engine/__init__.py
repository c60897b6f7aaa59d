"""HyRe Studio engine: hypothesis reweighting for personalised reward models.

A pure library: never imports streamlit. See docs/engine.md for the module map.
"""

__version__ = "0.1.0"
