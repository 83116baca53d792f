"""Evaluate transferability metrics on image classification (EMMS, Meng et al., NeurIPS 2023, Tab. 1-3).

Reads the feature caches (``data.cache`` layout under CACHE_DIR), scores every MODEL on every DATASET
with every METRIC, and judges the scores against the fine-tuned ground truth of GROUP (weighted
Kendall tau etc.). Tables go to RESULTS_DIR as CSV/JSON, figures to RESULTS_DIR/plots; a re-run
computes only missing scores. See docs/evaluation.md.

    python evaluate_metric_cls.py                                  # the CNN group, every metric
    python evaluate_metric_cls.py --group vit_group --metrics emms logme
    python evaluate_metric_cls.py --no-ground-truth --models a b c --datasets fashion_mnist
"""
from pathlib import Path

from evaluation.cli import ScriptDefaults, main

ROOT = Path(__file__).resolve().parent

GROUP = "cnn_group"                      # ground-truth group (data/ground_truth/{GROUP}.json)
MODELS = None                            # None: the group's models
DATASETS = None                          # None: the group's datasets
METRICS = None                           # None: every metric in metrics.list_metrics()
ENCODERS = ("clip", "bert", "gpt2")      # text encoders of the label embeddings (EMMS: CLIP, BERT, GPT-2)
CACHE_DIR = ROOT / "cache"
RESULTS_DIR = str(ROOT / "results" / "{group}")
N_JOBS = 1                               # models scored at once in worker processes (e.g. the core count)

DEFAULTS = ScriptDefaults(task="classification", group=GROUP, models=MODELS, datasets=DATASETS, metrics=METRICS,
                          encoders=ENCODERS, cache_dir=CACHE_DIR, results_dir=RESULTS_DIR,
                          n_jobs=N_JOBS)

if __name__ == "__main__":
    raise SystemExit(main(DEFAULTS, description=__doc__.splitlines()[0]))
