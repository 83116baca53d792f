"""Evaluate label-embedding metrics on image captioning (EMMS, Meng et al., NeurIPS 2023, captioning table).

Each captioning set's label embedding is the per-sample caption embedding of every text encoder
(``caption_embeddings/{dataset}/{encoder}.npy``, N x E), stacked to N x E x K; each captioner's
features are ``features/{dataset}/{model}.npy``. Only metrics that need no class labels run:
EMMS and the F-label baselines LogME / TransRate. Ground truth: the published captioning scores.
Tables go to RESULTS_DIR as CSV/JSON, figures to RESULTS_DIR/plots; a re-run computes only missing
scores. See docs/evaluation.md.

    python evaluate_metric_caption.py
    python evaluate_metric_caption.py --datasets flickr8k --encoders minilm
"""
from pathlib import Path

from evaluation.cli import ScriptDefaults, main

ROOT = Path(__file__).resolve().parent

GROUP = "caption"                                      # ground-truth group (data/ground_truth/caption.json)
MODELS = None                                          # None: the group's 9 captioners
DATASETS = None                                        # None: the group's 5 captioning sets
METRICS = ("emms", "logme_flabel", "transrate_flabel")
ENCODERS = ("clip", "bert", "gpt2")
CACHE_DIR = ROOT / "cache"
RESULTS_DIR = str(ROOT / "results" / "{group}")
N_JOBS = 1                               # models scored at once in worker processes (e.g. the core count)

DEFAULTS = ScriptDefaults(task="caption", group=GROUP, models=MODELS, datasets=DATASETS, metrics=METRICS,
                          encoders=ENCODERS, cache_dir=CACHE_DIR, results_dir=RESULTS_DIR,
                          n_jobs=N_JOBS)

if __name__ == "__main__":
    raise SystemExit(main(DEFAULTS, description=__doc__.splitlines()[0]))
