"""Per-sample caption embeddings with CLIP ViT-g/14 (LAION-2B) text tower.

Reads CACHE_DIR/captions/{dataset}.json (written by the caption feature extraction, in the features'
sample order) and writes CACHE_DIR/caption_embeddings/{dataset}/clip.npy (N x E); resumable in
chunks, existing files skipped. weights: $MODEL_SELECTOR_WEIGHTS/open_clip/ViT-g-14/laion2b_s12b_b42k/open_clip_model.safetensors (or --weights-file). See docs/data.md.

    python Label_embedding/clip_sentence.py --datasets flickr8k
"""
from pathlib import Path

from Label_embedding.cli import ScriptDefaults, main_sentences

ENCODER = "clip"                                        # text-encoder registry name
DATASETS = None                                         # None: every captioning dataset
CACHE_DIR = Path(__file__).resolve().parents[1] / "cache"

DEFAULTS = ScriptDefaults(encoder=ENCODER, cache_dir=CACHE_DIR, datasets=DATASETS)

if __name__ == "__main__":
    raise SystemExit(main_sentences(DEFAULTS, description=__doc__.splitlines()[0]))
