"""What the pages share, UI only: context (cached store and arrays), sidebar, charts,
widgets, display labels, and the Data and Evaluate pages' form helpers.

Nothing here decides anything about the data: the numbers come from hyre_engine.
`labels` and `charts` never import streamlit (a benchmark draws the figures).
"""
