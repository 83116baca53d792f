"""Print the README's markdown table of a written evaluation (run_default.py / run_offline_benchmark.py).

    .venv/bin/python scripts/results_table.py results/default
    .venv/bin/python scripts/results_table.py docs/results/offline_benchmark
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIGITS = 2


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir", type=Path)
    p.add_argument("--digits", type=int, default=DIGITS)
    args = p.parse_args(argv)
    from evaluation.report import markdown_table
    try:
        print(markdown_table(args.results_dir, digits=args.digits))
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
