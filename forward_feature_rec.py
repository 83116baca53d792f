"""Extract the fused image-expression features of the REC candidates (backbone spatial map +
expression encoder) into the feature cache, with both label texts' embeddings (docs/tasks.md).

    python forward_feature_rec.py                                   # composed scenes, 6 candidates
    python forward_feature_rec.py --dataset refcoco --data-root /data --candidates efficientnet_lite0+minilm
"""
import tasks  # noqa: F401  (registers the task datasets)
from tasks import rec
from tasks.cli import extraction_main

CANDIDATES = rec.CANDIDATES              # "backbone+expression_encoder"
DATASET = rec.DATASET
SPLIT = "train"
ENCODERS = ("minilm", "e5", "mpnet")                 # text encoders of the label texts (box; expression + box)
CACHE_DIR = "cache"
DATA_ROOT = None                         # None: $MODEL_SELECTOR_DATA (full-scale sets only)

if __name__ == "__main__":
    raise SystemExit(extraction_main(rec, __doc__.splitlines()[0], candidates=CANDIDATES, dataset=DATASET, split=SPLIT,
                                     encoders=ENCODERS, cache_dir=CACHE_DIR, data_root=DATA_ROOT))
