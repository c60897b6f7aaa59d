"""The pages of the HyRe Studio app (UI only: they call hyre_engine and render).

`_shared` holds what the pages share: the cached store and arrays, the current
pool / ensemble / user, the sidebar, the charts, widgets and display labels.
"""
