"""Fit the aligned models of the offline MLL hub (mll/aligned.py) and write their provenance.

Fitting is seeded and cheap once the fit images' backbone features are cached (the ridge solve
takes milliseconds), so the models are also fitted on first use by ``mll_benchmark.py``; this
script warms the feature cache, checks that no model is fitted on the offline targets' test images,
and records what each model saw::

    python scripts/fit_offline_vlms.py                     # -> results/mll/aligned_fits.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.cache import atomic_save_json  # noqa: E402
from mll.aligned import ALIGNED_SPECS, assert_not_fitted_on  # noqa: E402
from mll.tasks import offline_target  # noqa: E402
from mll.vlm import create_vlm  # noqa: E402

# ---- configuration (the defaults of mll_benchmark.py) ---------------------------------------------
IMAGE_SIZE = 128
CACHE_DIR = "cache"
OUT = "results/mll/aligned_fits.json"
TARGETS = ("fashion_mnist", "mnist", "digits", "textures", "lfw_faces", "easyvqa_shapes", "easyvqa_colors")
PER_CLASS = 15
RANDOM_STATE = 0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    p.add_argument("--cache-dir", default=CACHE_DIR)
    p.add_argument("--out", default=OUT)
    p.add_argument("--random-state", type=int, default=RANDOM_STATE)
    args = p.parse_args(argv)
    t0 = time.time()
    vlms = [create_vlm(s.name, image_size=args.image_size, cache_dir=args.cache_dir, random_state=args.random_state,
                       progress=True) for s in ALIGNED_SPECS]
    tasks = [offline_target(t, per_class=PER_CLASS, random_state=args.random_state) for t in TARGETS]
    assert_not_fitted_on(vlms, tasks)
    fits = {v.name: v.provenance() for v in vlms}
    for name, prov in fits.items():
        parts = ", ".join(f"{f['dataset']}[{'all' if f['classes'] is None else len(f['classes'])} cls x "
                          f"{f['per_class']}]" for f in prov["spec"]["fit"])
        print(f"{name:26s} {prov['image_feature_key']:38s} {prov['n_images']:4d} images: {parts}")
    out = {"models": fits, "seconds": round(time.time() - t0, 1)}
    atomic_save_json(Path(args.out), out)
    print(f"provenance in {args.out} ({out['seconds']} s)")
    return out


if __name__ == "__main__":
    main()
