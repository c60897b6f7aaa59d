"""Per-user preference files of the shape issue 14 measured: many users, a few pairs each.

    .venv/bin/python bench/make_eval_file.py --out out/eval-users [--train-users 860]
        [--train-pairs 15] [--targets 40] [--target-pairs 80] [--seed 0]

Simulated users over the demo's 810 pairs (324 texts): each user is one of the demo
personas (hyre_engine/demo.py, data/demo/personas.json) with every utility weight
jittered by N(0, JITTER) and its own label noise in [0, MAX_NOISE], so users of one
persona agree mostly, not exactly. A user labels a random sample of distinct pairs,
preferring the response of higher utility (flipped with its noise). Writes
``train.jsonl`` (the training users) and ``target.jsonl`` (other users, more pairs
each), rows in the design format with ``group`` = ``annotator`` = the user id.
Everything comes from ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyre_engine import demo  # noqa: E402

# How far a user's weights stray from their persona's: the persona weights are O(1).
JITTER = 0.5


def _pairs() -> list[dict]:
    """The demo's unique pairs (pair id, prompt, the two responses with their variants)."""
    seen: dict[str, dict] = {}
    for row in demo.read_jsonl(demo.PAIRS_FILE):
        if row["pair_id"] not in seen:
            seen[row["pair_id"]] = {k: row[k] for k in ("pair_id", "prompt", "response_a", "response_b",
                                                         "depth_a", "style_a", "depth_b", "style_b")}
    return list(seen.values())


def _user(persona: demo.Persona, rng: np.random.Generator) -> demo.Persona:
    def jitter(weights: dict[str, float], names) -> dict[str, float]:
        return {n: weights.get(n, 0.0) + float(rng.normal(0.0, JITTER)) for n in names}

    return replace(persona, depth=jitter(persona.depth, demo.DEPTHS), style=jitter(persona.style, demo.STYLES),
                   features=jitter(persona.features, persona.features),
                   noise=float(rng.uniform(0.0, demo.MAX_NOISE)))


def _rows(user_id: str, user: demo.Persona, pairs: list[dict], n_pairs: int, rng: np.random.Generator):
    for i in rng.choice(len(pairs), size=n_pairs, replace=False):
        p = pairs[i]
        a = {"text": p["response_a"], "depth": p["depth_a"], "style": p["style_a"]}
        b = {"text": p["response_b"], "depth": p["depth_b"], "style": p["style_b"]}
        prefers_a = demo.utility(user, a) > demo.utility(user, b)
        if rng.random() < user.noise:
            prefers_a = not prefers_a
        yield {"pair_id": p["pair_id"], "prompt": p["prompt"], "response_a": p["response_a"],
               "response_b": p["response_b"], "label": "a" if prefers_a else "b",
               "group": user_id, "annotator": user_id}


def write_files(out: Path, *, train_users: int, train_pairs: int, targets: int, target_pairs: int,
                seed: int) -> tuple[Path, Path]:
    """Write train.jsonl and target.jsonl under ``out``; returns their paths."""
    rng = np.random.default_rng(seed)
    personas, pairs = demo.load_personas(), _pairs()
    if max(train_pairs, target_pairs) > len(pairs):
        raise ValueError(f"at most {len(pairs)} distinct pairs per user")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, n_users, n_pairs, prefix in (("train", train_users, train_pairs, "user"),
                                           ("target", targets, target_pairs, "target")):
        lines = []
        for u in range(n_users):
            user = _user(personas[int(rng.integers(len(personas)))], rng)
            lines += [json.dumps(r) for r in _rows(f"{prefix}-{u:04d}", user, pairs, n_pairs, rng)]
        path = out / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for train.jsonl and target.jsonl")
    parser.add_argument("--train-users", type=int, default=860)
    parser.add_argument("--train-pairs", type=int, default=15)
    parser.add_argument("--targets", type=int, default=40)
    parser.add_argument("--target-pairs", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, target = write_files(args.out, train_users=args.train_users, train_pairs=args.train_pairs,
                                targets=args.targets, target_pairs=args.target_pairs, seed=args.seed)
    for path in (train, target):
        print(f"wrote {path}: {sum(1 for _ in path.open())} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
