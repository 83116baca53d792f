"""EMMS with K = 3 packaged label encoders on the offline zoo: simplex weights t, and EMMS vs LogME /
TransRate on the same stacked F-labels, judged against data/ground_truth/offline_zoo.json.

Features as in run_default.py (7 offline models x 4 datasets, 50 images per class of the training
split, seed 0; reused from CACHE_DIR when already extracted), class-name embeddings "a photo of a {}."
of every encoder in ENCODERS + EXTRA_ENCODERS, then ``evaluation.encoder_weights.encoder_weight_study``:
per (dataset, model) the weights t of the K = len(ENCODERS) stack, and per encoder set (each encoder
alone: K = 1; ENCODERS together; EXTRA_SETS) the scores and weighted tau of emms, logme_flabel and
transrate_flabel. Writes RESULTS_DIR/encoder_weights.json and .md; see docs/encoders.md.

    .venv/bin/python benchmarks/encoder_weights.py                 # ~6 min on 2 busy cores once features are cached
    .venv/bin/python benchmarks/encoder_weights.py --datasets digits textures --encoders minilm e5 mpnet
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ENCODERS = ("minilm", "e5", "mpnet")         # the K = 3 stack whose weights t are reported
EXTRA_ENCODERS = ("spacy_md",)               # also scored alone and in EXTRA_SETS
EXTRA_SETS = (("minilm", "e5", "spacy_md"), ("minilm", "e5", "mpnet", "spacy_md"))
DATASETS = ("fashion_mnist", "mnist", "digits", "textures")
GROUND_TRUTH = "offline_zoo"
SPLIT = "train"
N_PER_CLASS = 50
RANDOM_STATE = 0
TEMPLATES = "photo"
CACHE_DIR = ROOT / "cache" / "default"       # shared with run_default.py (same features)
RESULTS_DIR = ROOT / "results"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    p.add_argument("--extra-encoders", nargs="*", default=list(EXTRA_ENCODERS))
    p.add_argument("--no-extra-sets", action="store_true", help="only the single encoders and --encoders")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--models", nargs="+", default=None, help="default: the ground truth's models")
    p.add_argument("--ground-truth", default=GROUND_TRUTH)
    p.add_argument("--n-per-class", type=int, default=N_PER_CLASS)
    p.add_argument("--random-state", type=int, default=RANDOM_STATE)
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def _markdown(study: dict, models) -> str:
    main = "+".join(study["encoders"])
    lines = [f"# EMMS with K = {len(study['encoders'])} label encoders ({', '.join(study['encoders'])})", "",
             "Simplex weights t of the registry `emms` per dataset x model (t[e]: weight of encoder e's F-labels).", ""]
    for name in [main] + [n for n in next(iter(study["datasets"].values()))["weights"] if n != main]:
        encs = name.split("+")
        lines += [f"## t for {name}", "", "| dataset | model | " + " | ".join(f"t[{e}]" for e in encs) + " |",
                  "|---|---|" + "---|" * len(encs)]
        for d, entry in study["datasets"].items():
            for m in models:
                lines.append(f"| {d} | {m} | " + " | ".join(f"{v:.3f}" for v in entry["weights"][name][m]) + " |")
            lines.append(f"| {d} | **mean** | " + " | ".join(f"{v:.3f}" for v in study["mean_weights"][d][name]) + " |")
        lines.append("")
    if "mean_weighted_tau" in study:
        metrics = list(next(iter(study["mean_weighted_tau"].values())))
        lines += ["## Weighted Kendall tau vs the fine-tuned accuracies (per dataset, then the mean)", "",
                  "| encoders | metric | " + " | ".join(study["datasets"]) + " | mean |",
                  "|---|---|" + "---|" * (len(study["datasets"]) + 1)]
        for name in study["sets"]:
            for metric in metrics:
                per = [study["datasets"][d]["weighted_tau"][name][metric] for d in study["datasets"]]
                lines.append(f"| {name} | {metric} | " + " | ".join(f"{v:+.3f}" for v in per)
                             + f" | {study['mean_weighted_tau'][name][metric]:+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    from data.cache import atomic_save_json, atomic_write
    from data.ground_truth import load_ground_truth
    from evaluation.encoder_weights import encoder_weight_study
    from Label_embedding.embed import write_label_embeddings
    from models.pipeline import extract_to_cache

    table = load_ground_truth(args.ground_truth)
    truth = {d: table[d] for d in args.datasets}
    models = args.models or [m for m in truth[args.datasets[0]] if all(m in truth[d] for d in args.datasets)]
    all_encoders = list(dict.fromkeys(list(args.encoders) + list(args.extra_encoders)))
    extract_to_cache(models, args.datasets, cache_dir=args.cache_dir, split=SPLIT, n_per_class=args.n_per_class,
                     random_state=args.random_state, progress=not args.quiet)
    for d in args.datasets:
        for enc in all_encoders:
            write_label_embeddings(d, enc, args.cache_dir, templates=TEMPLATES, progress=False)
    sets = [[e] for e in all_encoders] + [list(args.encoders)]
    if not args.no_extra_sets:
        sets += [list(s) for s in EXTRA_SETS if all(e in all_encoders for e in s)]
    study = encoder_weight_study(args.cache_dir, args.datasets, models, encoders=args.encoders, ground_truth=truth,
                                 encoder_sets=sets, random_state=args.random_state, progress=not args.quiet)
    study.update({"models": models, "ground_truth": args.ground_truth, "n_per_class": args.n_per_class,
                  "templates": TEMPLATES})
    args.results_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_json(args.results_dir / "encoder_weights.json", study)
    text = _markdown(study, models)
    atomic_write(args.results_dir / "encoder_weights.md", lambda fh: fh.write(text.encode()))
    print(text)
    print(f"written: {args.results_dir / 'encoder_weights.json'}, {args.results_dir / 'encoder_weights.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
