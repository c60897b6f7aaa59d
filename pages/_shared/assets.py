"""The app's own files in assets/: its style sheet and favicon (a local file: an emoji or
:material: icon would be fetched from a CDN by every browser). Light on purpose: the
first-launch screen uses them before the app's heavy imports."""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
STYLE_FILE = ASSETS_DIR / "style.css"
FAVICON_FILE = ASSETS_DIR / "favicon.png"
