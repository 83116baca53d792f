"""Rank pre-trained models for YOUR image data, without fine-tuning them (EMMS + baselines).

Give an image folder (one sub-folder per class) or a CSV of ``path,label`` rows, and a list of
candidate models (registry names, ``models.list_models()``). The script extracts every model's
features on your images, embeds your class names with foundation-model text encoders, scores each
model with EMMS and the chosen baselines, prints a ranking and recommends a model.

    .venv/bin/python select_models.py my_images/                       # offline zoo, EMMS + LogME + ...
    .venv/bin/python select_models.py labels.csv --models efficientnet_lite0 dinov2_s --metrics emms logme
    .venv/bin/python select_models.py my_images/ --models resnet50 densenet121 --weights-dir ~/weights \
        --encoders clip bert gpt2 --encoder-weights-dir ~/text_weights

Everything is cached under ``--cache-dir`` (features, labels, label embeddings, scores): re-running
with more models or metrics computes only what is new. Offline it works with the offline zoo; the
full registries (torchvision CNNs, ViTs) work where their weights are on disk (``--weights-dir``).

Every name and path is checked before any work; a bad one, or any error of the library, is one line
``select_models.py: error: ...`` and exit status 2 (``--debug`` shows the traceback); Ctrl-C is one
line and exit status 130 (finished work is cached: re-run to resume). Unreadable images are skipped
with a warning that lists them (``--strict-images`` makes them an error). Models the primary metric
cannot separate are reported as tied; the recommendation then says what decided
(``evaluation.selection_report``).
"""
from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "dinov2_s",
          "ocr_det", "ocr_rec", "ocr_cls")
METRICS = ("emms", "logme", "leep", "nce", "transrate", "sfda", "hscore_reg")
PRIMARY_METRIC = "emms"              # the recommendation follows this metric's ranking
ENCODERS = ("minilm",)
N_PER_CLASS = 200                    # at most this many images per class are scored (seeded)
BATCH_SIZE = 32
CACHE_DIR = ROOT / "cache" / "select"
RESULTS_DIR = ROOT / "results" / "select"
MIN_PER_CLASS = 5                    # fewer scored images in a class: the output warns that scores are noisy
PROG = "select_models.py"
MODEL_GROUPS = ("offline", "offline_trained", "cnn", "vit")    # image backbones; captioning models rank caption data


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Rank pre-trained models for an image classification dataset without fine-tuning.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data", type=Path, nargs="?",
                   help="a folder with one sub-folder of images per class, or a CSV with 'path' and 'label' "
                        "columns (paths relative to the CSV); not needed with --list-models")
    p.add_argument("--models", nargs="+", default=list(MODELS),
                   help="candidate models, registry names (see --list-models)")
    p.add_argument("--metrics", nargs="+", default=list(METRICS),
                   help="transferability metrics to compute (metrics.list_metrics())")
    p.add_argument("--primary", default=PRIMARY_METRIC, help="metric whose ranking gives the recommendation")
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS),
                   help="text encoders that embed the class names (EMMS F-labels); 'minilm' is offline")
    p.add_argument("--templates", default="photo",
                   help="prompt templates for class names: a named set of Label_embedding.embed or one "
                        "template with {} (e.g. 'a satellite photo of {}.')")
    p.add_argument("--n-per-class", type=int, default=N_PER_CLASS,
                   help="score at most this many images per class (seeded subsample); 0 = all")
    p.add_argument("--name", default=None, help="dataset name used for the cache (default: from the path)")
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="directory with local model weights (full registries; offline zoo needs none)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--csv-encoding", default="utf-8",
                   help="text encoding of a CSV input (UTF-8 with or without BOM by default; e.g. latin-1)")
    p.add_argument("--strict-images", action="store_true",
                   help="stop on unreadable images instead of skipping them with a warning")
    p.add_argument("--list-models", action="store_true", help="print the registered models and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    return p


def _dataset_name(path: Path) -> str:
    stem = path.resolve().stem if path.is_file() else path.resolve().name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "user_data"


def _templates(value: str):
    """One template when ``value`` holds ``{}``, else the name of a template set."""
    return (value,) if "{}" in value else value


def _repeated(names):
    return sorted({n for n in names if list(names).count(n) > 1})


def _fail(p: argparse.ArgumentParser, message: str):
    """One line ``select_models.py: error: ...`` on stderr, exit status 2 (argparse's convention)."""
    p.exit(2, f"{PROG}: error: {' '.join(str(message).split())}\n")


def _validate(p: argparse.ArgumentParser, args) -> None:
    """Every name and path, before any work: one-line error and exit 2 on the first bad one."""
    import metrics as metrics_lib
    import models as model_registry
    from Label_embedding import list_text_encoders, resolve_templates
    from evaluation.runner import TASKS, resolve_metrics
    from models.weights import require_weights

    if args.data is None:
        _fail(p, "the following argument is required: data (an image folder or a CSV file)")
    if not args.data.exists():
        _fail(p, f"no such image folder or CSV file: {args.data}")
    for option, names in (("--models", args.models), ("--metrics", args.metrics), ("--encoders", args.encoders)):
        if _repeated(names):
            _fail(p, f"{option} lists {', '.join(_repeated(names))} more than once")
    for name in args.models:
        try:
            entry = model_registry.model_info(name)
        except ValueError as exc:
            _fail(p, str(exc))
        if entry.group not in MODEL_GROUPS:
            _fail(p, f"model {name!r} is a {entry.group} model; image classification candidates are the "
                    f"{', '.join(MODEL_GROUPS)} groups (see --list-models)")
        if entry.group in ("cnn", "vit"):
            try:
                require_weights(args.weights_dir, entry.weights, model=name, what="its pre-trained weights")
            except FileNotFoundError as exc:
                _fail(p, str(exc))
    unknown = [m for m in args.metrics if m not in metrics_lib.list_metrics()]
    if unknown:
        _fail(p, f"unknown metric(s) {', '.join(map(repr, unknown))} in --metrics; available: "
                f"{', '.join(metrics_lib.list_metrics())}")
    if args.primary not in args.metrics:
        _fail(p, f"--primary {args.primary!r} is not among --metrics {args.metrics}")
    unknown = [e for e in args.encoders if e not in list_text_encoders()]
    if unknown:
        _fail(p, f"unknown text encoder(s) {', '.join(map(repr, unknown))} in --encoders; available: "
                f"{', '.join(list_text_encoders())}")
    try:
        resolve_metrics(list(args.metrics), TASKS["classification"], tuple(args.encoders))
        resolve_templates(_templates(args.templates))
    except (ValueError, ImportError) as exc:
        _fail(p, str(exc))
    if args.n_per_class < 0:
        _fail(p, f"--n-per-class must be >= 0 (0 = all images), got {args.n_per_class}")
    if args.batch_size < 1:
        _fail(p, f"--batch-size must be >= 1, got {args.batch_size}")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", args.name):
        _fail(p, f"--name {args.name!r} must be a plain name (letters, digits, '_', '.', '-')")
    if args.weights_dir is not None and not args.weights_dir.is_dir():
        _fail(p, f"--weights-dir {args.weights_dir} is not a directory")
    for option, path in (("--cache-dir", args.cache_dir), ("--results-dir", args.results_dir)):
        if path.exists() and not path.is_dir():
            _fail(p, f"{option} {path} exists and is not a directory")
    if args.device is not None:
        import torch

        try:
            device = torch.device(args.device)
        except RuntimeError as exc:
            _fail(p, f"--device {args.device!r}: {exc}")
        if device.type == "cuda" and not torch.cuda.is_available():
            _fail(p, f"--device {args.device!r}: CUDA is not available on this machine")


def _load(args):
    """The user's dataset; unreadable images are reported as one warning line each load."""
    from data.user_dataset import UnreadableImageWarning, load_user_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreadableImageWarning)
        dataset = load_user_dataset(args.data, encoding=args.csv_encoding, strict_images=args.strict_images,
                                    progress=not args.quiet)
    for w in caught:
        if issubclass(w.category, UnreadableImageWarning):
            print(f"{PROG}: warning: {w.message} (--strict-images makes this an error)", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return dataset


def _run(p: argparse.ArgumentParser, args) -> int:
    import numpy as np

    from data import subsample_per_class
    from data.cache import atomic_write
    from evaluation import save_results
    from evaluation.end_to_end import score_models
    from evaluation.selection_report import format_selection, selection_table

    _validate(p, args)
    dataset = _load(args)
    name = args.name or _dataset_name(args.data)
    if args.n_per_class:
        images = dataset.subset(subsample_per_class(dataset, args.n_per_class, random_state=args.random_state))
    else:
        images = dataset
    counts = np.bincount(dataset.targets, minlength=len(dataset.classes))
    print(f"{name}: {len(dataset)} images in {len(dataset.classes)} classes "
          f"({', '.join(f'{c}: {n}' for c, n in zip(dataset.classnames, counts))}); scoring {len(images)}")
    scored = np.bincount(images.targets, minlength=len(images.classes))
    few = [c for c, n in zip(images.classnames, scored) if n < MIN_PER_CLASS]
    if few:
        print(f"{PROG}: warning: fewer than {MIN_PER_CLASS} images to score in class(es) {', '.join(few)}: "
              "scores from so few images are noisy and several metrics saturate; treat the ranking as a hint",
              file=sys.stderr)

    result = score_models(args.models, [name], cache_dir=args.cache_dir, results_dir=args.results_dir,
                          encoders=args.encoders, metrics=args.metrics, weights_dir=args.weights_dir,
                          dataset_factory=lambda _: images, classnames={name: images.classnames},
                          templates=_templates(args.templates), batch_size=args.batch_size, device=args.device,
                          random_state=args.random_state, progress=not args.quiet)
    table = selection_table(result.datasets[name], primary=args.primary)
    print()
    print(format_selection(table, primary=args.primary))
    written = save_results(result, args.results_dir)
    out_csv = args.results_dir / name / "selection.csv"
    data = table.to_csv().encode()
    atomic_write(out_csv, lambda fh: fh.write(data))            # a concurrent reader never sees half a file
    print(f"\nranking written to {out_csv} (and {len(written)} result files under {args.results_dir})")
    return 0


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.list_models:
        import models as model_registry

        for group in (*MODEL_GROUPS, "caption"):
            print(f"{group}: {', '.join(model_registry.list_models(group))}")
        return 0
    try:
        return _run(p, args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        p.exit(130, f"\n{PROG}: interrupted; re-run to resume (finished models are cached)\n")
    except (ValueError, OSError) as exc:        # the library's expected errors: bad data, files, caches
        if args.debug:
            raise
        _fail(p, _one_line(exc))


if __name__ == "__main__":
    raise SystemExit(main())
