#!/usr/bin/env python3
"""Monte-Carlo estimate of pi: the demo's bundled application.

Usage: pi.py SAMPLES SEED

Draws SAMPLES points uniformly in the unit square with ``random.Random(SEED)`` and counts
those inside the quarter disc. Prints one JSON line ``{"samples": N, "inside": K, "seed": S}``
on stdout; the same SAMPLES and SEED always give the same line, so results can be checked
and combined: pi ~= 4 * sum(inside) / sum(samples).
"""

import json
import random
import sys


def count_inside(samples: int, seed: int) -> int:
    rnd = random.Random(seed).random
    inside = 0
    for _ in range(samples):
        x = rnd()
        y = rnd()
        if x * x + y * y <= 1.0:
            inside += 1
    return inside


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: pi.py SAMPLES SEED", file=sys.stderr)
        return 2
    try:
        samples, seed = int(argv[0]), int(argv[1])
    except ValueError:
        print(f"pi.py: SAMPLES and SEED must be integers, got {argv[0]!r} {argv[1]!r}", file=sys.stderr)
        return 2
    if samples < 1:
        print(f"pi.py: SAMPLES must be at least 1, got {samples}", file=sys.stderr)
        return 2
    print(json.dumps({"samples": samples, "inside": count_inside(samples, seed), "seed": seed}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
