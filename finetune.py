"""Fine-tuned ground truth of the offline model zoo: writes data/ground_truth/offline_zoo.json.

    .venv/bin/python finetune.py                      # the committed table (resumes if killed)
    .venv/bin/python finetune.py --models efficientnet_lite0 dinov2_s --datasets digits --epochs 2 \
        --output /tmp/t.json                          # a quick partial table

Protocol: see finetuning/runner.py and docs/finetune.md. Finished (model, dataset) runs are kept in
cache/finetune/<output stem>.partial.json; a re-run skips them (pass --restart to start over).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from finetuning import FinetuneConfig, run_benchmark
from finetuning.engine import OPTIMIZERS

ROOT = Path(__file__).resolve().parent

# --- configuration of the committed table ------------------------------------------------------
# the whole offline zoo; ocr_rec keeps its native 48x320 text-line input (its backbone cannot take
# a height below ~33 px), which makes its runs the most expensive (see docs/finetune.md).
MODELS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "dinov2_s",
          "ocr_det", "ocr_rec", "ocr_cls"]
DATASETS = ["fashion_mnist", "mnist", "digits", "textures"]
LRS = [3e-3, 3e-4, 3e-5]        # AdamW grid (decades; CNNs peak high, the ViT low), picked on val
EPOCHS = 5
RESOLUTION = 56                 # shorter image side after the reduced-resolution resize (px)
SIZE_MULTIPLE = 14              # round resized sides to a multiple of this (ViT-S/14 patches)
N_TRAIN_PER_CLASS = 10
N_VAL_PER_CLASS = 10
N_TEST_PER_CLASS = 50           # digits' test split has 52 images in its smallest class
BATCH_SIZE = 16
OPTIMIZER = "adamw"
WEIGHT_DECAY = 0.05
WARMUP_FRACTION = 0.1
SEED = 0
NUM_THREADS = 1                 # 2 shared cores: 2 threads ran 10x slower than 1 under load
OUTPUT = ROOT / "data" / "ground_truth" / "offline_zoo.json"
PARTIAL_DIR = ROOT / "cache" / "finetune"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--datasets", nargs="+", default=DATASETS)
    p.add_argument("--lrs", nargs="+", type=float, default=LRS)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--resolution", type=int, default=RESOLUTION, help="0 = native model input size")
    p.add_argument("--size-multiple", type=int, default=SIZE_MULTIPLE)
    p.add_argument("--n-train", type=int, default=N_TRAIN_PER_CLASS, help="training images per class")
    p.add_argument("--n-val", type=int, default=N_VAL_PER_CLASS, help="validation images per class")
    p.add_argument("--n-test", type=int, default=N_TEST_PER_CLASS, help="test images per class")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=OPTIMIZER)
    p.add_argument("--weight-decay", type=float, default=WEIGHT_DECAY)
    p.add_argument("--warmup-fraction", type=float, default=WARMUP_FRACTION)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--threads", type=int, default=NUM_THREADS)
    p.add_argument("--output", type=Path, default=OUTPUT)
    p.add_argument("--partial", type=Path, default=None,
                   help="partial-results file (default: cache/finetune/<output stem>.partial.json)")
    p.add_argument("--restart", action="store_true", help="discard the partial results and start over")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    config = FinetuneConfig(lrs=tuple(args.lrs), epochs=args.epochs, resolution=args.resolution or None,
                            size_multiple=args.size_multiple, n_train_per_class=args.n_train,
                            n_val_per_class=args.n_val, n_test_per_class=args.n_test,
                            batch_size=args.batch_size, optimizer=args.optimizer,
                            weight_decay=args.weight_decay, warmup_fraction=args.warmup_fraction,
                            seed=args.seed, num_threads=args.threads)
    partial = args.partial or PARTIAL_DIR / f"{args.output.stem}.partial.json"
    if args.restart and partial.exists():
        partial.unlink()
    t0 = time.perf_counter()
    table = run_benchmark(args.models, args.datasets, config, args.output, partial,
                          progress=not args.no_progress)
    print(f"wrote {args.output} ({len(args.models)} models x {len(args.datasets)} datasets, "
          f"{table['elapsed_seconds']:.0f} s of fine-tuning, {time.perf_counter() - t0:.0f} s this invocation)")
    for dataset, row in table[table["group"]].items():
        ranked = sorted(row.items(), key=lambda kv: -kv[1])
        print(f"  {dataset:14s} " + "  ".join(f"{m}={v:.1f}" for m, v in ranked))
    return table


if __name__ == "__main__":
    main()
