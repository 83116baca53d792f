"""Extract features (input of the final norm, CLS / pooled tokens) + source probabilities of the
13 ViT-family models (EMMS image-classification benchmark, ViT group) into the feature cache.

Weights are read from WEIGHTS_DIR (or $MODEL_SELECTOR_WEIGHTS); see docs/models.md for the file
names. Re-running skips every (model, dataset) already in the cache. Example::

    python forward_feature_ViT.py --datasets cifar10 --n-per-class 50 --cache-dir cache
"""
import models
from models.cli import run_extraction_cli

MODELS = models.list_models("vit")
DATASETS = ["aircraft", "caltech101", "cars", "cifar10", "cifar100", "dtd", "flowers", "food", "pets", "sun397", "voc2007"]
DATA_ROOT = None        # None: the data registry's default root ($MODEL_SELECTOR_DATA)
CACHE_DIR = "cache"
WEIGHTS_DIR = None      # None: $MODEL_SELECTOR_WEIGHTS
BATCH_SIZE = 64
N_PER_CLASS = None      # None: every image; an int: that many images per class
SPLIT = "train"

if __name__ == "__main__":
    run_extraction_cli(__doc__, models=MODELS, datasets=DATASETS, data_root=DATA_ROOT, cache_dir=CACHE_DIR,
                       weights_dir=WEIGHTS_DIR, batch_size=BATCH_SIZE, n_per_class=N_PER_CLASS, split=SPLIT)
