"""Extract the fused image-question features of the VQA candidates (backbone + question encoder)
into the feature cache, with the answer labels and the answer-string embeddings (docs/tasks.md).

    python forward_feature_vqa.py                                   # easy-VQA subset, 12 candidates
    python forward_feature_vqa.py --candidates efficientnet_lite0+minilm --split test
"""
import argparse

import tasks  # noqa: F401  (registers the task datasets)
from tasks import vqa

CANDIDATES = vqa.CANDIDATES              # "backbone+question_encoder"
DATASET = vqa.DATASET
SPLIT = "train"
ENCODERS = ("minilm",)                   # text encoders of the answer embeddings (F-labels)
CACHE_DIR = "cache"
DATA_ROOT = None                         # None: $MODEL_SELECTOR_DATA (full-scale sets only)

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    p.add_argument("--dataset", default=DATASET)
    p.add_argument("--split", default=SPLIT)
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    p.add_argument("--cache-dir", default=CACHE_DIR)
    p.add_argument("--data-root", default=DATA_ROOT)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    status = vqa.extract(a.candidates, cache_dir=a.cache_dir, dataset=a.dataset, split=a.split, encoders=a.encoders,
                         data_root=a.data_root, device=a.device, progress=not a.quiet)
    print(f"{sum(s == 'extracted' for s in status.values())} extracted, "
          f"{sum(s == 'skipped' for s in status.values())} already cached, in {a.cache_dir}")
