"""Class-name label embeddings (EMMS F-labels) with BERT-large (bert-large-uncased), mean of the last hidden states over real tokens.

Writes CACHE_DIR/label_embeddings/{dataset}/bert.npy (C x E, row c = class id c) for every DATASET;
existing files are skipped. weights: $MODEL_SELECTOR_WEIGHTS/bert-large-uncased/ (or --model-dir); --include-padding = published pooling. See docs/data.md.

    python Label_embedding/bert.py
    python Label_embedding/bert.py --datasets cifar10 dtd --templates openai_imagenet
"""
from pathlib import Path

from Label_embedding.cli import ScriptDefaults, main_classnames

ENCODER = "bert"                                        # text-encoder registry name
DATASETS = None                                         # None: every classification + offline dataset
TEMPLATES = "photo"                                     # "a photo of a {}." (see Label_embedding.PROMPT_TEMPLATES)
CACHE_DIR = Path(__file__).resolve().parents[1] / "cache"

DEFAULTS = ScriptDefaults(encoder=ENCODER, cache_dir=CACHE_DIR, datasets=DATASETS, templates=TEMPLATES)

if __name__ == "__main__":
    raise SystemExit(main_classnames(DEFAULTS, description=__doc__.splitlines()[0]))
