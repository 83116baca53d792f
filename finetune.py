"""Fine-tuned ground truth of the offline model zoo: writes data/ground_truth/offline_zoo_v2.json.

    nice -n 10 .venv/bin/python finetune.py --stop-after-minutes 60     # a chunk; re-run to continue
    .venv/bin/python finetune.py --status                               # how far it is, the cost left
    .venv/bin/python finetune.py --models efficientnet_lite0 dinov2_s --datasets digits --epochs 2 \
        --n-seeds 1 --output /tmp/t.json                                 # a quick partial table

Protocol: see finetuning/runner.py, finetuning/protocol.py and docs/finetune.md. Every finished
training run (one lr, one seed) is kept in data/ground_truth/partial/<output stem>.partial.json
(committed between chunks); a re-run skips it (pass --restart to start over). The table is written
(group = the output file's stem) only when every (model, dataset) cell is done.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from executor.cli import add_executor_arguments, executor_from_args, executor_resources
from finetuning import FinetuneConfig, run_benchmark
from finetuning.engine import OPTIMIZERS
from models import list_models

ROOT = Path(__file__).resolve().parent

# --- configuration of the committed table (protocol v2: what the metrics see) -----------------
# every offline candidate (31): the 7 packaged networks, then the 11 networks pre-trained here
# (scripts/pretrain_offline.py; cheap: seconds per run), then the 13 intermediate layers of the
# packaged ones. A network pre-trained here on a target's domain leaves that cell empty (registry
# `excluded_targets`): 112 of the 124 cells are filled.
PACKAGED = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "dinov2_s",
            "ocr_det", "ocr_rec", "ocr_cls"]
MODELS = (PACKAGED + list_models("offline_trained")
          + [n for n in list_models("offline") if n not in PACKAGED])
DATASETS = ["textures", "digits", "mnist", "fashion_mnist"]   # cheapest first (textures: 3 classes)
LRS = [3e-3, 3e-4, 3e-5]        # starting AdamW grid (decades), picked on val ...
MAX_LR_EXTENSIONS = 2           # ... grown by a decade on the side of an edge optimum, at most twice
N_SEEDS = 3                     # seeds at the chosen lr: mean and std in the table
EPOCHS = 5
RESOLUTION = 112                # shorter side of the input (px); smaller native inputs stay native
SIZE_MULTIPLE = 14              # round resized sides to a multiple of this (ViT-S/14 patches)
N_TRAIN_PER_CLASS = 100         # the images the metrics are scored on (finetuning.protocol.train_subset)
N_VAL_PER_CLASS = 25            # capped at what the smallest train class has left (digits 22)
N_TEST_PER_CLASS = 200          # capped at the smallest test class (mnist 150, digits 52, textures 128)
BATCH_SIZE = 16
OPTIMIZER = "adamw"
WEIGHT_DECAY = 0.05
WARMUP_FRACTION = 0.1
SEED = 0
NUM_THREADS = 1                 # 2 shared cores: 2 threads ran 10x slower than 1 under load
BF16_MODELS = ["dinov2_s*"]     # trained in bfloat16 autocast: 1.6-1.7x faster steps, accuracies within
                                # seed noise of float32 (docs/finetune.md, Precision); cells started in
                                # float32 stay float32; the CNNs gain 1.06-1.18x and stay float32
OUTPUT = ROOT / "data" / "ground_truth" / "offline_zoo_v2.json"
PARTIAL_DIR = ROOT / "data" / "ground_truth" / "partial"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--datasets", nargs="+", default=DATASETS)
    p.add_argument("--lrs", nargs="+", type=float, default=LRS)
    p.add_argument("--max-lr-extensions", type=int, default=MAX_LR_EXTENSIONS)
    p.add_argument("--n-seeds", type=int, default=N_SEEDS)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--resolution", type=int, default=RESOLUTION, help="0 = native model input size")
    p.add_argument("--size-multiple", type=int, default=SIZE_MULTIPLE)
    p.add_argument("--n-train", type=int, default=N_TRAIN_PER_CLASS, help="training images per class")
    p.add_argument("--n-val", type=int, default=N_VAL_PER_CLASS, help="validation images per class (at most)")
    p.add_argument("--n-test", type=int, default=N_TEST_PER_CLASS, help="test images per class (at most)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=OPTIMIZER)
    p.add_argument("--weight-decay", type=float, default=WEIGHT_DECAY)
    p.add_argument("--warmup-fraction", type=float, default=WARMUP_FRACTION)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--threads", type=int, default=NUM_THREADS)
    p.add_argument("--output", type=Path, default=OUTPUT)
    p.add_argument("--partial", type=Path, default=None,
                   help="partial-results file (default: data/ground_truth/partial/<output stem>.partial.json)")
    p.add_argument("--stop-after-minutes", type=float, default=None,
                   help="start no training run after this many minutes (finished runs are kept)")
    p.add_argument("--estimate", action="store_true",
                   help="only time one run per model (random inputs) and project the table's cost")
    p.add_argument("--status", action="store_true",
                   help="only report how far the partial-results file is and the cost left (trains nothing)")
    p.add_argument("--restart", action="store_true", help="discard the partial results and start over")
    p.add_argument("--bf16-models", nargs="+", default=BF16_MODELS, metavar="PATTERN",
                   help="fnmatch patterns of the models whose training steps run in bfloat16 autocast "
                        "(finetuning.engine.PRECISIONS; the others in float32; a started cell keeps its precision)")
    p.add_argument("--no-progress", action="store_true")
    add_executor_arguments(p)           # --executor ray: one Ray task per (model, dataset) cell
    return p.parse_args(argv)


def precision_policy(bf16_patterns):
    """``model -> "bf16"`` for a model matching one of the fnmatch ``bf16_patterns``, else ``"fp32"``."""
    from fnmatch import fnmatchcase

    patterns = tuple(bf16_patterns)
    return lambda model: "bf16" if any(fnmatchcase(model, p) for p in patterns) else "fp32"


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(lrs=tuple(args.lrs), max_lr_extensions=args.max_lr_extensions, n_seeds=args.n_seeds,
                          epochs=args.epochs, resolution=args.resolution or None,
                          size_multiple=args.size_multiple, n_train_per_class=args.n_train,
                          n_val_per_class=args.n_val, n_test_per_class=args.n_test,
                          batch_size=args.batch_size, optimizer=args.optimizer,
                          weight_decay=args.weight_decay, warmup_fraction=args.warmup_fraction,
                          seed=args.seed, num_threads=args.threads)


def estimate(models, datasets, config: FinetuneConfig) -> dict:
    """Seconds of one run per model (finetuning.cost.time_run) and the projected table cost."""
    import data
    from finetuning.cost import project_table, time_run

    timings = {}
    for m in models:
        timings[m] = time_run(m, config, n_images=32)
        print(f"  {m:20s} input {timings[m]['input_size']}: build {timings[m]['build_s']:.1f} s, "
              f"train {timings[m]['train_s_per_img'] * 1e3:.0f} ms/img, eval {timings[m]['eval_s_per_img'] * 1e3:.0f} "
              f"ms/img -> {timings[m]['run_s']:.0f} s per run (10 classes)")
    classes = {d: len(data.get_dataset(d, split="train").classes) for d in datasets}
    proj = project_table({m: t["run_s"] for m, t in timings.items()}, classes, config)
    print(f"projected: {proj['runs_per_cell']:g} runs per cell; " + ", ".join(
        f"{m} {s / 3600:.1f} h" for m, s in proj["per_model_s"].items()) + f"; total {proj['total_s'] / 3600:.1f} h")
    return {"timings": timings, "projection": proj}


def status(partial: Path, models, datasets, config: FinetuneConfig) -> dict:
    """How far ``partial`` is (finetuning.cost.table_progress) for this configuration's table."""
    import data
    from finetuning.claims import CellClaims
    from finetuning.cost import format_progress, table_progress
    from finetuning.protocol import excluded
    from finetuning.results import ResultsStore

    if not partial.is_file():
        raise SystemExit(f"no partial-results file {partial} yet: nothing has been fine-tuned under this protocol")
    doc = ResultsStore(partial, config).document()  # refuses a file measured under another protocol
    classes = {d: len(data.get_dataset(d, split="train").classes) for d in datasets}
    progress = table_progress(doc, models, classes, config, skip=excluded)
    print(f"{partial}:\n{format_progress(progress)}")
    live = CellClaims(partial).live()
    if live:
        print("being trained now: " + ", ".join(f"{m} on {d} (pid {c.get('pid')} on {c.get('host')} since "
                                                f"{c.get('started')})" for m, d, c in live))
    return progress


def main(argv=None):
    from finetuning.protocol import excluded

    args = parse_args(argv)
    config = config_from_args(args)
    if args.estimate:
        return estimate(args.models, args.datasets, config)
    partial = args.partial or PARTIAL_DIR / f"{args.output.stem}.partial.json"
    if args.status:
        return status(partial, args.models, args.datasets, config)
    if args.restart and partial.exists():
        partial.unlink()
    t0 = time.perf_counter()
    deadline = None if args.stop_after_minutes is None else time.time() + 60 * args.stop_after_minutes
    try:
        with executor_from_args(args) as ex:      # serial: the in-process loop of run_benchmark
            table = run_benchmark(args.models, args.datasets, config, args.output, partial, group=args.output.stem,
                                  progress=not args.no_progress, skip=excluded, deadline=deadline,
                                  executor=ex if ex.distributed else None, resources=executor_resources(args),
                                  precision=precision_policy(args.bf16_models))
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    if table is None:
        return None
    print(f"wrote {args.output} ({len(args.models)} models x {len(args.datasets)} datasets, "
          f"{table['elapsed_seconds']:.0f} s of fine-tuning, {time.perf_counter() - t0:.0f} s this invocation)")
    for dataset, row in table[table["group"]].items():
        ranked = sorted(row.items(), key=lambda kv: -kv[1])
        std = {m: table["runs"][dataset][m].get("test_acc_std") for m in row}
        print(f"  {dataset:14s} " + "  ".join(f"{m}={v:.1f}" + (f"±{std[m]:.1f}" if std[m] is not None else "")
                                             for m, v in ranked))
    return table


if __name__ == "__main__":
    main()
