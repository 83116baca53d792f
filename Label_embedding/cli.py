"""Command-line driver shared by the scripts ``Label_embedding/{clip,bert,gpt2}.py`` (class names) and
``Label_embedding/{clip,bert,gpt2}_sentence.py`` (captions). Each script only sets its defaults.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

from .embed import PROMPT_TEMPLATES, write_caption_embeddings, write_label_embeddings

__all__ = ["ScriptDefaults", "main_classnames", "main_sentences"]


@dataclass(frozen=True)
class ScriptDefaults:
    encoder: str                              # text-encoder registry name
    cache_dir: Path                           # root of the data.cache layout
    datasets: Optional[Sequence[str]] = None  # None: every dataset of the script's kind(s)
    templates: str = "photo"                  # prompt-template set (class names only)


def _parser(defaults: ScriptDefaults, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--datasets", nargs="+", default=defaults.datasets, help="dataset names (default: all of this kind)")
    p.add_argument("--cache-dir", type=Path, default=defaults.cache_dir, help="root of the cache layout")
    p.add_argument("--encoder", default=defaults.encoder, help="text-encoder registry name")
    p.add_argument("--cache-name", default=None, help="file name under the cache (default: the encoder name)")
    p.add_argument("--model-dir", default=None, help="local folder of the Hugging Face model (bert/gpt2)")
    p.add_argument("--weights-file", default=None, help="local open_clip weight file (clip)")
    p.add_argument("--weights-dir", default=None, help="weights root (default: $MODEL_SELECTOR_WEIGHTS)")
    p.add_argument("--include-padding", action="store_true",
                   help="average padding tokens in, as the published EMMS scripts do (bert/gpt2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="recompute existing files")
    return p


def _encoder_kwargs(args) -> Dict[str, object]:
    """Only the options the user set, so every encoder gets arguments it knows."""
    chosen = {"model_dir": args.model_dir, "weights_file": args.weights_file, "weights_dir": args.weights_dir,
              "include_padding": True if args.include_padding else None}
    kwargs = {k: v for k, v in chosen.items() if v is not None}
    kwargs["device"] = args.device
    return kwargs


class _LazyEncoder:
    """Builds the (large) encoder once, on the first dataset that needs it."""

    def __init__(self, name: str, kwargs: Dict[str, object]):
        self.name, self.kwargs, self._enc = name, kwargs, None

    def get(self):
        if self._enc is None:
            from .encoders import get_text_encoder
            self._enc = get_text_encoder(self.name, **self.kwargs)
        return self._enc


def _needs_file(path: Path, overwrite: bool) -> bool:
    return overwrite or not path.is_file()


def main_classnames(defaults: ScriptDefaults, argv: Optional[Sequence[str]] = None, *, description: str = "") -> int:
    """Write ``label_embeddings/{dataset}/{encoder}.npy`` for every requested dataset."""
    import data
    from data.cache import CacheLayout
    p = _parser(defaults, description)
    p.add_argument("--templates", nargs="+", default=[defaults.templates],
                   help=f"a template set ({', '.join(sorted(PROMPT_TEMPLATES))}) or format strings with '{{}}'")
    p.add_argument("--verbatim", action="store_true", help="embed class names as written (no '_' -> ' ')")
    args = p.parse_args(argv)
    names = args.datasets or data.list_datasets("classification") + data.list_datasets("offline")
    templates = args.templates[0] if len(args.templates) == 1 and args.templates[0] in PROMPT_TEMPLATES \
        else args.templates
    layout, lazy = CacheLayout(args.cache_dir), _LazyEncoder(args.encoder, _encoder_kwargs(args))
    key = args.cache_name or args.encoder
    for name in names:
        if not _needs_file(layout.label_embedding(name, key), args.overwrite):
            print(f"[skip] {layout.label_embedding(name, key)} exists")
            continue
        path = write_label_embeddings(name, lazy.get(), args.cache_dir, templates=templates,
                                      readable=not args.verbatim, cache_name=key, overwrite=args.overwrite)
        print(f"[done] {path}")
    return 0


def main_sentences(defaults: ScriptDefaults, argv: Optional[Sequence[str]] = None, *, description: str = "") -> int:
    """Write ``caption_embeddings/{dataset}/{encoder}.npy`` from ``captions/{dataset}.json`` of the cache."""
    import data
    from data.cache import CacheLayout
    p = _parser(defaults, description)
    p.add_argument("--chunk-size", type=int, default=2048, help="captions per resumable chunk")
    args = p.parse_args(argv)
    names = args.datasets or data.list_datasets("caption")
    layout, lazy = CacheLayout(args.cache_dir), _LazyEncoder(args.encoder, _encoder_kwargs(args))
    key = args.cache_name or args.encoder
    missing = []
    for name in names:
        if not _needs_file(layout.caption_embedding(name, key), args.overwrite):
            print(f"[skip] {layout.caption_embedding(name, key)} exists")
            continue
        if not layout.captions(name).is_file():
            print(f"[missing] {layout.captions(name)}: extract the caption features of {name!r} first")
            missing.append(name)
            continue
        path = write_caption_embeddings(name, lazy.get(), args.cache_dir, cache_name=key, overwrite=args.overwrite,
                                        chunk_size=args.chunk_size)
        print(f"[done] {path}")
    return 1 if missing else 0
