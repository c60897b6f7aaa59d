"""The pages of the HyRe Studio app (UI only: they call hyre_engine and render).

`common` holds what every page shares: the cached store and arrays, the
current pool / ensemble / user, the sidebar, and the live labelling helpers.
"""
