"""The server HyRe Studio runs as (`python app.py` starts it): app.py plus the sign-in routes.

`st.App` serves app.py exactly as `streamlit run app.py` would, and adds the two HTTP
routes that keep a users-file sign-in across reloads and tabs in an HttpOnly cookie
(pages/_shared/signin_routes.py). Started as plain `streamlit run app.py`, the app
works the same, except that a users-file sign-in then lasts for the tab only.
"""

import streamlit as st

from hyre_engine import auth
from pages._shared import signin_routes

# The sign-in form may now keep a sign-in in a cookie: these routes will set it.
auth.SIGN_IN_CODES.enabled = True
app = st.App("app.py", routes=signin_routes.routes())
