"""Class-name label embeddings (EMMS F-labels) with CLIP ViT-g/14 (LAION-2B) text tower.

Writes CACHE_DIR/label_embeddings/{dataset}/clip.npy (C x E, row c = class id c) for every DATASET;
existing files are skipped. weights: $MODEL_SELECTOR_WEIGHTS/open_clip/ViT-g-14/laion2b_s12b_b42k/open_clip_model.safetensors (or --weights-file). See docs/data.md.

    python Label_embedding/clip.py
    python Label_embedding/clip.py --datasets cifar10 dtd --templates openai_imagenet
"""
from pathlib import Path

from Label_embedding.cli import ScriptDefaults, main_classnames

ENCODER = "clip"                                        # text-encoder registry name
DATASETS = None                                         # None: every classification + offline dataset
TEMPLATES = "photo"                                     # "a photo of a {}." (see Label_embedding.PROMPT_TEMPLATES)
CACHE_DIR = Path(__file__).resolve().parents[1] / "cache"

DEFAULTS = ScriptDefaults(encoder=ENCODER, cache_dir=CACHE_DIR, datasets=DATASETS, templates=TEMPLATES)

if __name__ == "__main__":
    raise SystemExit(main_classnames(DEFAULTS, description=__doc__.splitlines()[0]))
