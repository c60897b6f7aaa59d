"""Fixtures of the browser tests: the real server on a free port, on a small demo DB.

The DB template comes from tests/app/conftest.py (`small_demo_once`), so a full
test run builds it once. Tests skip, saying why, when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Starting Streamlit and importing torch on a shared 2-core machine can take a while.
SERVER_START_TIMEOUT_S = 90


def _app_conftest():
    spec = importlib.util.spec_from_file_location("_hyre_app_conftest", REPO / "tests/app/conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"streamlit did not answer within {SERVER_START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's Chromium at /usr/bin/chromium (make browser)")
    return str(CHROMIUM)


@contextlib.contextmanager
def serve(db: Path, log: Path, env: dict | None = None, port: int | None = None):
    """The real app (`python app.py`, as `make run` starts it) on ``port`` (else a free one)
    over ``db``; yields its URL."""
    port = port or _free_port()
    env = {**os.environ, "HYRE_DB": str(db), **(env or {})}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def app_port() -> int:
    """A free loopback port, for a test that must name the server's address before it starts."""
    return _free_port()


@pytest.fixture
def serve_app(chromium_path):
    """`serve(db, log)`: the real app over a database a test made itself."""
    return serve


@pytest.fixture
def demo_db(tmp_path_factory, tmp_path) -> tuple[Path, dict]:
    """This test's own copy of the small demo DB: (its path, the demo's info)."""
    template, info = _app_conftest().small_demo_once(tmp_path_factory)
    db = tmp_path / "hyre.duckdb"
    shutil.copyfile(template, db)
    return db, info


@pytest.fixture
def app_server(chromium_path, demo_db, tmp_path):
    """The real app on a free port with its own copy of the small demo DB; yields its URL."""
    db, info = demo_db
    log = tmp_path / "server.log"
    with serve(db, log) as url:
        yield {"url": url, "info": info, "log": log, "db": db}


@pytest.fixture
def browser_page(chromium_path):
    """A Chromium page (1440 x 1300) driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1440, "height": 1300})
        finally:
            browser.close()
