"""Linear-probe yardstick on the metrics' own features: writes data/ground_truth/offline_probe.json.

    nice -n 10 .venv/bin/python linear_probe.py            # every offline candidate x 4 datasets
    .venv/bin/python linear_probe.py --models efficientnet_lite0 ocr_cls --datasets digits --output /tmp/p.json

The protocol (training / test images, resolution, pipeline) is read from the fine-tuning results
(FINE_TUNED: the finished table, else its partial-results file, else finetune.py's configuration),
so the probe sees exactly the images and inputs of the fine-tuned table and of the metrics
(finetuning.protocol). The probe's Kendall tau per dataset is stored against the v2 fine-tuned
values finished so far and against each group of REFERENCES. Features are cached under
CACHE_DIR/{train,test}; library: finetuning/probe.py; see docs/finetune.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent

MODEL_GROUPS = ("offline", "offline_trained")   # every candidate of these registry groups (run_offline_benchmark.py)
DATASETS = ["fashion_mnist", "mnist", "digits", "textures"]
FINE_TUNED = ROOT / "data" / "ground_truth" / "offline_zoo_v2.json"
FINE_TUNED_PARTIAL = ROOT / "data" / "ground_truth" / "partial" / "offline_zoo_v2.partial.json"
REFERENCES = ["offline_zoo"]    # the first protocol's table (56 px, 10 images per class), for comparison
CACHE_DIR = ROOT / "cache" / "protocol_v2"
OUTPUT = ROOT / "data" / "ground_truth" / "offline_probe.json"
FOLDS = 5
CS = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0]
NUM_THREADS = 1


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=None, help=f"default: every model of the groups {MODEL_GROUPS}")
    p.add_argument("--datasets", nargs="+", default=DATASETS)
    p.add_argument("--fine-tuned", type=Path, default=None,
                   help=f"fine-tuning table or partial file (default: {FINE_TUNED.name}, else its partial file)")
    p.add_argument("--references", nargs="*", default=REFERENCES, help="ground-truth groups to compare with")
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    p.add_argument("--output", type=Path, default=OUTPUT)
    p.add_argument("--folds", type=int, default=FOLDS)
    p.add_argument("--cs", nargs="+", type=float, default=CS)
    p.add_argument("--threads", type=int, default=NUM_THREADS)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    import torch

    from data.ground_truth import load_ground_truth
    from finetuning.probe import run_probe
    from finetuning.results import read_results

    args = parse_args(argv)
    if args.models is None:
        import models

        args.models = [m for g in MODEL_GROUPS for m in models.list_models(g)]
    source = args.fine_tuned or next((p for p in (FINE_TUNED, FINE_TUNED_PARTIAL) if p.is_file()), None)
    if source is not None:
        config, fine_tuned = read_results(source)
        references = {source.name: fine_tuned}
    else:                                    # nothing fine-tuned yet: the protocol finetune.py will use
        import finetune

        config, references = finetune.config_from_args(finetune.parse_args([])), {}
    references.update({g: load_ground_truth(g) for g in args.references})
    torch.set_num_threads(args.threads)
    # BLAS threads too: with torch on 1 thread and OpenBLAS on 2, the same fits ran > 10x slower here
    # (> 27 min against 169 s with OMP_NUM_THREADS=1, 2026-12-02)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=args.threads):
        doc = run_probe(args.models, args.datasets, config, args.cache_dir, args.output, references=references,
                        cs=args.cs, folds=args.folds, progress=not args.no_progress, device="cpu")
    print(f"wrote {args.output}")
    for d, row in doc[doc["group"]].items():
        ranked = "  ".join(f"{m}={v:.1f}" for m, v in sorted(row.items(), key=lambda kv: -kv[1]))
        print(f"  {d:14s} {ranked}")
        for name, agree in doc["agreement"].get(d, {}).items():
            tau = agree["kendall_tau"]
            print(f"  {'':14s}   Kendall tau vs {name}: "
                  + ("n/a (< 3 common models)" if tau is None else f"{tau:+.2f} over {len(agree['models'])} models"))
    return doc


if __name__ == "__main__":
    main()
