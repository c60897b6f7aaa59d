"""Load test on loopback: N headless Chromium sessions label on one app server for S seconds.

Run: .venv/bin/python bench/bench_load.py [--browsers 10] [--seconds 60] [--port 8516] [--db FILE]
     (a quick check: --browsers 3 --seconds 20; --think-s T: a labeller's reading time)

The server is the real app (`python app.py`, as `make run` starts it) on 127.0.0.1 with
its own $HYRE_DB: by default a fresh file holding the demo pool's real texts
(data/demo/pairs.jsonl) with K = 100 heads of seeded random Z and D (the page's costs
do not depend on their values; no model is loaded), or a copy of --db. Each browser
session (its own Playwright context: its own cookies, Streamlit session and ?user=) opens
the Label page, labels once to warm up, then, until the time is up, presses A or B and
waits until the page shows the label counted ("Labels n / goal" went up): that wait is
the click -> confirmed label latency. Then every session stops and the figures are:

- server CPU per label: the server process's own CPU time (user + system, all its
  threads; psutil) over the labelling window, divided by the labels confirmed in it;
- p50 / p95 of click -> confirmed label, over every label of every session;
- labels per second, the labels stored (a check that none was dropped), the server's
  CPU per second while every session sits open for 5 s before labelling (what a
  label's share does not include), and the load average before and after (the
  browsers share the machine with the server).

Targets (issue 12): <= 40 ms server CPU per label, p50 <= 500 ms, p95 <= 1.5 s.

--profile FILE: py-spy (not a requirement: `pip install py-spy`) samples the server over
the labelling window, only threads holding the GIL (what costs CPU), and writes the
collapsed stacks to FILE; the busiest functions are printed with their share.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGET_CPU_MS, TARGET_P50_MS, TARGET_P95_MS = 40.0, 500.0, 1500.0
N_HEADS, EMBED_DIM = 100, 384  # the paper's K; MiniLM's width
START_TIMEOUT_S, LABEL_TIMEOUT_MS = 120, 30_000
# Seconds the sessions sit open before labelling, to measure the server's idle CPU.
IDLE_WINDOW_S = 5.0
# The "Labels" metric's count, or null while the page has none (JS, run in the page).
COUNT_JS = """() => {
  for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
    const l = m.querySelector('[data-testid="stMetricLabel"]');
    if (l && l.innerText.trim().startsWith('Labels')) {
      const v = m.querySelector('[data-testid="stMetricValue"]');
      const n = v ? parseInt(v.innerText, 10) : NaN;
      return Number.isNaN(n) ? null : n;
    }
  }
  return null;
}"""
WAIT_JS = f"(n) => {{ const c = ({COUNT_JS})(); return c !== null && c > n; }}"


def make_store(path: Path) -> None:
    """The demo pool's texts with seeded Z (N, K) and D (N, 384), a ready ensemble."""
    import numpy as np

    from hyre_engine.data import read_preferences
    from hyre_engine.demo import PAIRS_FILE
    from hyre_engine.store import Store

    frame = read_preferences(PAIRS_FILE)
    with Store(path) as store:
        pool = store.add_pool("demo", frame, source="bench_load")
        n = store.n_pairs(pool)
        rng = np.random.default_rng(0)
        store.put_ensemble(ensemble_id="bench-load", pool_id=pool, backbone_id="bench",
                           config={"kind": "bench", "n_heads": N_HEADS}, weights=b"\0",
                           train_fingerprint="bench")
        store.put_head_predictions("bench-load", pool, rng.normal(scale=2.0, size=(n, N_HEADS)).astype(np.float32))
        store.append_pair_differences("bench", pool, rng.normal(size=(n, EMBED_DIM)).astype(np.float32), start=0)


def start_server(db: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HYRE_DB": str(db)}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--server.port", str(port), "--server.address", "127.0.0.1",
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the app did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


async def _count(page) -> int | None:
    return await page.evaluate(COUNT_JS)


async def _label(page, key: str) -> float:
    """Press ``key`` and wait until the page counts one more label; seconds it took."""
    before = await _count(page)
    start = time.perf_counter()
    await page.keyboard.press(key)
    await page.wait_for_function(WAIT_JS, arg=before, polling=20, timeout=LABEL_TIMEOUT_MS)
    return time.perf_counter() - start


async def _open(browser, url: str, user: str):
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    page = await context.new_page()
    await page.goto(f"{url}/?user={user}", timeout=START_TIMEOUT_S * 1000)
    await page.wait_for_function(f"() => ({COUNT_JS})() !== null", polling=100, timeout=START_TIMEOUT_S * 1000)
    await page.get_by_role("button", name="A is better").wait_for(timeout=START_TIMEOUT_S * 1000)
    await _label(page, "a")  # warm-up: the session's first rerun and its LiveState
    return page


async def _session(page, start_event: asyncio.Event, deadline: list[float], out: list[float], index: int,
                   think_s: float = 0.0) -> None:
    await start_event.wait()
    k = index
    rng = random.Random(index)
    while time.perf_counter() < deadline[0]:
        out.append(await _label(page, "ab"[k % 2]))
        k += 1
        if think_s > 0:  # reading the next pair: think_s on average, uniform in [0.5, 1.5] x think_s
            await asyncio.sleep(think_s * rng.uniform(0.5, 1.5))


def start_profiler(profile: Path | None, pid: int, seconds: float) -> subprocess.Popen | None:
    """py-spy recording the server's GIL-holding threads for ``seconds`` into ``profile`` (raw stacks)."""
    if profile is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--gil", "--rate", "200", "--format", "raw",
                             "--duration", str(int(seconds) + 1), "--output", str(profile), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_profile(profile: Path, top: int = 25) -> None:
    """The functions with the most samples (inclusive) of a raw py-spy file, with their share."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        for frame in {f.split(":")[0] + ")" for f in stack.split(";")}:
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
    print(f"profile: {total} samples holding the GIL (at 200 per second), the busiest functions (inclusive):")
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100 * count / max(total, 1):5.1f}%  {frame}")


async def run_browsers(url: str, n: int, seconds: float, server, profile: Path | None = None,
                       think_s: float = 0.0) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages = []
            for i in range(n):  # one at a time: a first rerun is the heaviest
                pages.append(await _open(browser, url, f"load{i}"))
            latencies: list[list[float]] = [[] for _ in range(n)]
            go, deadline = asyncio.Event(), [0.0]
            tasks = [asyncio.create_task(_session(p, go, deadline, latencies[i], i, think_s))
                     for i, p in enumerate(pages)]
            # what the server spends with every session open and nobody labelling
            idle0 = server.cpu_times()
            await asyncio.sleep(IDLE_WINDOW_S)
            idle1 = server.cpu_times()
            cpu0, load0, browsers0 = server.cpu_times(), os.getloadavg(), _browsers_cpu()
            spy = start_profiler(profile, server.pid, seconds)
            t0 = time.perf_counter()
            deadline[0] = t0 + seconds
            go.set()
            await asyncio.gather(*tasks)
            wall = time.perf_counter() - t0
            cpu1, browsers1 = server.cpu_times(), _browsers_cpu()
            if spy is not None:
                await asyncio.to_thread(spy.wait)
        finally:
            await browser.close()
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    idle = (idle1.user + idle1.system) - (idle0.user + idle0.system)
    return {"latencies": latencies, "cpu_s": cpu, "wall_s": wall, "load_before": load0, "load_after": os.getloadavg(),
            "idle_cpu_per_s": idle / IDLE_WINDOW_S, "browsers_cpu_s": _cpu_delta(browsers0, browsers1)}


def _browsers_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each Chromium process this benchmark started, by pid."""
    import psutil

    out = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            if "chrom" in proc.name().lower():
                times = proc.cpu_times()
                out[proc.pid] = times.user + times.system
        except psutil.Error:
            continue
    return out


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(result: dict, n: int, seconds: float, stored: int) -> bool:
    flat = [x * 1000 for per in result["latencies"] for x in per]
    labels = len(flat)
    if not labels:
        print("no label was confirmed")
        return False
    cpu_ms = result["cpu_s"] * 1000 / labels
    p50, p95 = statistics.median(flat), _percentile(flat, 0.95)
    lb, la = result["load_before"], result["load_after"]
    print(f"{n} browsers x {seconds:g} s on {os.cpu_count()} cores; load average before "
          f"{lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}, after {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    print(f"labels confirmed {labels} in {result['wall_s']:.1f} s ({labels / result['wall_s']:.2f} labels/s; "
          f"per session min {min(map(len, result['latencies']))}, max {max(map(len, result['latencies']))}); "
          f"stored {stored} (warm-up included: {stored - n})")
    checks = [("server CPU per label", cpu_ms, TARGET_CPU_MS), ("p50 click -> confirmed", p50, TARGET_P50_MS),
              ("p95 click -> confirmed", p95, TARGET_P95_MS)]
    ok = True
    for name, value, target in checks:
        met = value <= target
        ok &= met
        print(f"{name:<24} {value:8.1f} ms (target <= {target:.0f} ms: {'ok' if met else 'MISSED'})")
    print(f"server CPU {result['cpu_s']:.1f} s over {result['wall_s']:.1f} s "
          f"({100 * result['cpu_s'] / result['wall_s']:.0f}% of one core); idle with {n} sessions open: "
          f"{1000 * result['idle_cpu_per_s']:.0f} ms of CPU per second")
    print(f"the browsers' CPU (every Chromium process, same window): {result['browsers_cpu_s']:.1f} s, "
          f"{result['browsers_cpu_s'] * 1000 / labels:.0f} ms per label")
    return ok


def _stored_labels(db: Path) -> int:
    from hyre_engine.store import Store

    with Store(db) as store:
        sessions = store.list_sessions()
        return int(sessions["n_labels"].sum()) if len(sessions) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--browsers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--port", type=int, default=8516)
    parser.add_argument("--db", type=Path, help="a store to copy and serve (default: a synthetic demo store)")
    parser.add_argument("--server-log", type=Path, help="keep the server's output in this file")
    parser.add_argument("--profile", type=Path, help="py-spy the server over the labelling window into this file")
    parser.add_argument("--think-s", type=float, default=0.0,
                        help="mean seconds each session waits after a confirmed label before the next key "
                        "(uniform in 0.5-1.5x; default 0: every session presses again at once, the worst case)")
    args = parser.parse_args(argv)
    if not (1 <= args.browsers <= 50 and 1 <= args.seconds <= 600 and 0 <= args.think_s <= 60):
        parser.error("--browsers must be 1..50, --seconds 1..600 and --think-s 0..60")
    if not Path(CHROMIUM).exists():
        parser.error(f"this benchmark needs Chromium at {CHROMIUM}")
    import psutil

    with tempfile.TemporaryDirectory() as tmp:
        db, log = Path(tmp) / "load.duckdb", Path(tmp) / "server.log"
        if args.db:
            shutil.copyfile(args.db, db)
        else:
            make_store(db)
        proc = start_server(db, args.port, log)
        try:
            result = asyncio.run(run_browsers(f"http://127.0.0.1:{args.port}", args.browsers, args.seconds,
                                              psutil.Process(proc.pid), args.profile, args.think_s))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        errors = [line for line in log.read_text().splitlines() if "Traceback" in line or "Error" in line]
        ok = report(result, args.browsers, args.seconds, _stored_labels(db))
        if errors:
            print(f"server log: {len(errors)} error lines, first: {errors[0][:200]}")
        if args.server_log:
            shutil.copyfile(log, args.server_log)
        if args.profile is not None and args.profile.exists():
            print_profile(args.profile)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
