"""Extract the fused image-question features of the VQA candidates (backbone + question encoder)
into the feature cache, with the answer ids and the answer-string embeddings (docs/tasks.md).

    python forward_feature_vqa.py                                   # easy-VQA subset, 12 candidates
    python forward_feature_vqa.py --candidates efficientnet_lite0+minilm --split test
"""
import tasks  # noqa: F401  (registers the task datasets)
from tasks import vqa
from tasks.cli import extraction_main

CANDIDATES = vqa.CANDIDATES              # "backbone+question_encoder"
DATASET = vqa.DATASET
SPLIT = "train"
ENCODERS = ("minilm", "e5", "mpnet")                 # text encoders of the answer embeddings (F-labels)
CACHE_DIR = "cache"
DATA_ROOT = None                         # None: $MODEL_SELECTOR_DATA (full-scale sets only)

if __name__ == "__main__":
    raise SystemExit(extraction_main(vqa, __doc__.splitlines()[0], candidates=CANDIDATES, dataset=DATASET, split=SPLIT,
                                     encoders=ENCODERS, cache_dir=CACHE_DIR, data_root=DATA_ROOT))
