"""The effect of each departure between the MLL variants on the offline benchmark (docs/mll.md,
"Departures from the released code").

Starting from one variant (default: our earlier reconstruction), each piece of the method (graph,
labeling, transfer matrix, class score, Eq. 7, reuse weights, prompt; ``mll.config.PIECES``) is
switched alone to the other variant (default: the authors' released code), then the other way
round; every configuration reports MLL's and INB's mean accuracy over the targets (k = 1, 3) and the
mean best single model::

    python mll_departures.py                       # the offline benchmark's default settings
    python mll_departures.py --models conse-lite0-names conse-lite1-gpt --per-class 5

Writes ``{out}/departures.csv`` and ``.md``; caches under ``--cache-dir`` (shared with mll_benchmark.py).
"""
from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import pandas as pd

from mll.benchmark import build_offline_benchmark, compare_variants, departure_configs, table_to_markdown
from mll.config import METHOD_VARIANTS

# ---- configuration (the offline defaults of mll_benchmark.py) --------------------------------------
SOURCES = ("fashion_mnist", "mnist", "digits", "textures", "lfw_faces")
TARGETS = ("fashion_mnist", "mnist", "digits", "textures", "lfw_faces")
IMAGES_PER_NODE = 10
PER_CLASS = 15
IMAGE_SIZE = 128
KS = (1, 3)
CACHE_DIR = "cache"
OUT_DIR = "results/mll/offline"
RANDOM_STATE = 0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", choices=sorted(METHOD_VARIANTS), default="reconstruction")
    p.add_argument("--target", choices=sorted(METHOD_VARIANTS), default="released")
    p.add_argument("--models", nargs="*", default=None, help="hub models (default: the 9 ConSE stand-ins)")
    p.add_argument("--images-per-node", type=int, default=IMAGES_PER_NODE)
    p.add_argument("--per-class", type=int, default=PER_CLASS)
    p.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    p.add_argument("--cache-dir", default=CACHE_DIR)
    p.add_argument("--out-dir", default=OUT_DIR)
    p.add_argument("--random-state", type=int, default=RANDOM_STATE)
    return p.parse_args(argv)


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    if args.base == args.target:
        raise SystemExit("error: --base and --target must be different variants")
    t0 = time.time()
    build = functools.partial(build_offline_benchmark, sources=SOURCES, targets=TARGETS, models=args.models,
                              images_per_node=args.images_per_node, per_class=args.per_class,
                              image_size=args.image_size, cache_dir=args.cache_dir,
                              random_state=args.random_state)
    table = compare_variants(departure_configs(args.base, args.target), lambda cfg: build(config=cfg), KS)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "departures.csv", float_format="%.4f")
    (out / "departures.md").write_text(table_to_markdown(table))
    pd.set_option("display.width", 200)
    print(table.round(4).to_string())
    print(f"results in {out} ({time.time() - t0:.0f} s)")
    return table


if __name__ == "__main__":
    main()
