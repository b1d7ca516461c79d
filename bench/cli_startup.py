"""Start-up time of ``rapid_analysis``: ``--help``, a usage error and a pipeline's help.

Each command runs ``--repeat`` times in a fresh interpreter; the reference is a bare
``python -c pass`` of the same interpreter in the same run. Target (issue 13): ``--help`` and
argument errors under 0.3 s; a pipeline's help imports that pipeline alone.

Usage: ``python bench/cli_startup.py [--repeat 7]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass (reference)": [sys.executable, "-c", "pass"],
    "rapid_analysis --help": [sys.executable, "-m", "lsst.ts.rapidanalysis.cli", "--help"],
    "rapid_analysis frob (usage error)": [sys.executable, "-m", "lsst.ts.rapidanalysis.cli", "frob"],
    "rapid_analysis run --help": [sys.executable, "-m", "lsst.ts.rapidanalysis.cli", "run", "--help"],
    "rapid_analysis run sfm --help": [sys.executable, "-m", "lsst.ts.rapidanalysis.cli", "run", "sfm", "--help"],
}


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, timeout=120)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the page cache
        wall(command)
    medians = {name: statistics.median(wall(c) for _ in range(args.repeat)) for name, c in COMMANDS.items()}
    reference = medians["python -c pass (reference)"]
    print(f"median of {args.repeat} runs each")
    for name, seconds in medians.items():
        print(f"{name:<36} {seconds:6.3f} s  {seconds / reference:5.1f}x the reference")


if __name__ == "__main__":
    main()
