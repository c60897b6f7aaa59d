"""First launch on a fresh clone: from `python app.py` (what `make run` starts) to a usable Label page.

    .venv/bin/python bench/bench_first_launch.py [--source /work/main] [--venv /work/main/.venv]
        [--port 8651] [--runs 1] [--wait-calibration] [--keep]

Per run: ``git clone`` of ``--source`` into a temporary folder (no data/hyre.duckdb:
the demo is built from nothing), the setup (``make run``'s `setup` step: here the
given virtual environment linked in as ``.venv``, nothing installed), timed and
printed apart; headless Chromium started (not counted). Then the clock starts and
``.venv/bin/python app.py`` serves the clone on a loopback port, as ``make run`` does.
The page is opened once the server answers its health check, and the run ends when
the Label page is usable: the prompt card and both answers shown, the A and B
buttons enabled. Printed per stage, in seconds from the start: the server's health
check, the first-launch screen, each build stage's first progress text, and the
usable Label page; with ``--wait-calibration`` also when the sidebar says that beta
switched to the background calibration's. The load average comes with every run:
the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_S = 600
# The Label page is usable: the pair is shown and A / B can be pressed.
USABLE_JS = """() => {
  const on = (key) => { const b = document.querySelector(`.st-key-${key} button`); return b && !b.disabled; };
  return !!document.querySelector('.st-key-prompt-card') && !!document.querySelector('.st-key-card-a')
    && !!document.querySelector('.st-key-card-b') && on('btn_a') && on('btn_b');
}"""
PROGRESS_JS = """() => { const p = document.querySelector('[data-testid="stProgress"]');
  return p ? p.innerText.trim() : null; }"""
SWITCHED_JS = """() => { const s = document.querySelector('[data-testid="stSidebar"]');
  return !!s && s.innerText.includes('calibrated in the background'); }"""


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _setup(source: Path, venv: Path, where: Path) -> tuple[Path, dict[str, float]]:
    """A fresh clone with the venv linked in: (clone, seconds per setup step)."""
    seconds = {}
    start = time.perf_counter()
    clone = where / "repo"
    subprocess.run(["git", "clone", "-q", str(source), str(clone)], check=True)
    seconds["git clone"] = time.perf_counter() - start
    start = time.perf_counter()
    (clone / ".venv").symlink_to(venv.resolve(), target_is_directory=True)
    for stale in (clone / "data").glob("hyre.duckdb*"):
        stale.unlink()  # a clone has none (gitignored); make sure
    seconds["venv (reused, linked)"] = time.perf_counter() - start
    return clone, seconds


def _wait_health(url: str, proc: subprocess.Popen, log: Path, start: float) -> float:
    while time.perf_counter() - start < TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not answer")


def _note(events: list, name: str, start: float) -> None:
    """Record an event and print it at once (a run that times out still shows how far it got)."""
    events.append((name, time.perf_counter() - start))
    print(f"  {events[-1][1]:7.2f} s  {name}", flush=True)


def _watch(page, start: float, wait_calibration: bool, events: list) -> list[tuple[str, float]]:
    """Poll the page until the Label page is usable (and beta switched): (event, seconds) in order."""
    seen = set()
    usable = False
    while time.perf_counter() - start < TIMEOUT_S:
        text = page.evaluate(PROGRESS_JS)
        if text:
            stage = text.split(":")[0].split("…")[0].strip()  # "Embedding the texts: 64 / 324 texts"
            if stage not in seen:
                seen.add(stage)
                _note(events, f"progress: {stage}", start)
        if not usable and page.evaluate(USABLE_JS):
            usable = True
            _note(events, "Label page usable", start)
            if not wait_calibration:
                return events
        if usable and page.evaluate(SWITCHED_JS):
            _note(events, "sidebar: beta switched to the calibrated one", start)
            return events
        time.sleep(0.1)
    raise RuntimeError(f"no usable Label page within {TIMEOUT_S} s; seen: {events}")


def run_once(args, browser, where: Path) -> dict[str, float]:
    clone, setup = _setup(args.source, args.venv, where)
    for step, s in setup.items():
        print(f"  setup: {step}: {s:.2f} s (excluded)", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "HYRE_DB"}  # the clone's data/hyre.duckdb
    env.update(dict(item.split("=", 1) for item in args.server_env))
    log = where / "app.log"
    url = f"http://127.0.0.1:{args.port}"
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([str(clone / ".venv/bin/python"), "app.py", "--server.port", str(args.port),
                                 "--server.headless", "true",
                                 "--browser.gatherUsageStats", "false"],
                                cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        events: list = []
        _wait_health(url, proc, log, start)
        _note(events, "server answers /_stcore/health", start)
        if args.open_after:
            time.sleep(args.open_after)
        page.goto(url)
        page.wait_for_selector("h1", timeout=TIMEOUT_S * 1000)
        _note(events, "first screen drawn", start)
        _watch(page, start, args.wait_calibration, events)
        if page.locator("[data-testid='stException']").count():
            raise RuntimeError("the page shows an exception")
        if args.screenshot:
            page.screenshot(path=str(args.screenshot))
    finally:
        page.close()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return dict(events)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO, help="repository to clone (default: this one)")
    parser.add_argument("--venv", type=Path, default=REPO / ".venv", help="virtual environment to reuse")
    parser.add_argument("--port", type=int, default=8651)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--wait-calibration", action="store_true")
    parser.add_argument("--screenshot", type=Path, default=None, help="PNG of the usable Label page (last run)")
    parser.add_argument("--keep", action="store_true", help="keep the clones (their folders are printed)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the server only (e.g. OMP_NUM_THREADS=1); repeatable")
    parser.add_argument("--open-after", type=float, default=0.0, metavar="S",
                        help="open the page only this many seconds after the server answers (0: at once), "
                             "to see what the browser's drawing costs the build")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    usable = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for run in range(1, args.runs + 1):
                where = Path(tempfile.mkdtemp(prefix="bench-first-launch-"))
                print(f"run {run} ({where}); load before: {_uptime()}", flush=True)
                usable.append(run_once(args, browser, where)["Label page usable"])
                print(f"  load after: {_uptime()}", flush=True)
                if not args.keep:
                    subprocess.run(["rm", "-rf", str(where)], check=False)
        finally:
            browser.close()
    print(f"python app.py -> usable Label page: median {statistics.median(usable):.2f} s over {len(usable)} "
          f"run(s) (setup excluded, printed above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
