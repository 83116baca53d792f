"""Per-sample caption embeddings with BERT-large (bert-large-uncased), mean of the last hidden states over real tokens.

Reads CACHE_DIR/captions/{dataset}.json (written by the caption feature extraction, in the features'
sample order) and writes CACHE_DIR/caption_embeddings/{dataset}/bert.npy (N x E); resumable in
chunks, existing files skipped. weights: $MODEL_SELECTOR_WEIGHTS/bert-large-uncased/ (or --model-dir); --include-padding = published pooling. See docs/data.md.

    python Label_embedding/bert_sentence.py --datasets flickr8k
"""
from pathlib import Path

from Label_embedding.cli import ScriptDefaults, main_sentences

ENCODER = "bert"                                        # text-encoder registry name
DATASETS = None                                         # None: every captioning dataset
CACHE_DIR = Path(__file__).resolve().parents[1] / "cache"

DEFAULTS = ScriptDefaults(encoder=ENCODER, cache_dir=CACHE_DIR, datasets=DATASETS)

if __name__ == "__main__":
    raise SystemExit(main_sentences(DEFAULTS, description=__doc__.splitlines()[0]))
