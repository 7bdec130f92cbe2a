"""Sum the CPU-time samples of ``sitecustomize.py``: the frames with the most samples of their own, then with the
most in all (their callees included), in per cent of the samples after start-up (imports left out).

    python bench/cpu_sampler/summary.py DIR/cpu-*.txt [--top 60]
"""

from __future__ import annotations

import argparse
import collections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--top", type=int, default=60)
    args = parser.parse_args()
    own: collections.Counter = collections.Counter()
    total_in: collections.Counter = collections.Counter()
    total = 0
    for path in args.files:
        with open(path) as f:
            for line in f:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                frames = stack.split(";")
                if any("_find_and_load" in frame for frame in frames):
                    continue          # importing: start-up, or a module's first use
                n = int(count)
                total += n
                own[frames[-1]] += n
                for frame in set(frames):
                    total_in[frame] += n
    print(f"{total} samples")
    for title, counter in (("own", own), ("with callees", total_in)):
        print(f"--- {title}")
        for frame, n in counter.most_common(args.top):
            print(f"{100 * n / max(1, total):6.2f}% {frame}")


if __name__ == "__main__":
    main()
