"""Extract the pooled (question, context) features of the TQA candidates into the feature cache,
with the answer-text embeddings (F-labels) of every text encoder (docs/tasks.md, "TQA").

    python forward_feature_tqa.py                                  # WordNet QA, 6 MiniLM depths, 4 encoders
    python forward_feature_tqa.py --dataset squad_v1 --split train --n 2000 \
        --candidates bert_base_squad roberta_base_squad2 --data-root /data --weights-dir /weights

Feature: tasks._tqa_models (mean of the last kept layer's token states over question + context,
padding masked). Entries already cached from the same data and settings are skipped.
"""
import argparse

import tasks  # noqa: F401  (registers the task datasets)
from tasks import tqa

CANDIDATES = tqa.CANDIDATES              # minilm_l1 ... minilm_l6 (offline); full scale: tasks._tqa_models
DATASET = tqa.DATASET
SPLIT = "train"
N = tqa.N_FEATURE_SAMPLES                # first N questions of the split (0: all)
ENCODERS = tqa.ENCODERS                  # text encoders of the answer-text embeddings (F-labels)
CACHE_DIR = "cache"
DATA_ROOT = None                         # None: $MODEL_SELECTOR_DATA (full-scale sets only)
WEIGHTS_DIR = None                       # None: $MODEL_SELECTOR_WEIGHTS (full-scale candidates only)
MAX_LENGTH = tqa.MAX_LENGTH
BATCH_SIZE = 32

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    p.add_argument("--dataset", default=DATASET)
    p.add_argument("--split", default=SPLIT)
    p.add_argument("--n", type=int, default=N, help="first N questions (0: every question)")
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    p.add_argument("--cache-dir", default=CACHE_DIR)
    p.add_argument("--data-root", default=DATA_ROOT)
    p.add_argument("--weights-dir", default=WEIGHTS_DIR)
    p.add_argument("--max-length", type=int, default=MAX_LENGTH)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    status = tqa.extract(a.candidates, cache_dir=a.cache_dir, dataset=a.dataset, split=a.split, n=a.n or None,
                         encoders=a.encoders, data_root=a.data_root, weights_dir=a.weights_dir,
                         max_length=a.max_length, batch_size=a.batch_size, progress=not a.quiet)
    print(f"{sum(s == 'extracted' for s in status.values())} extracted, "
          f"{sum(s == 'skipped' for s in status.values())} already cached, in {a.cache_dir}")
