"""Checks run before any work, so that a full-scale run fails in a second, not after hours.

:func:`check_full_scale` validates every name (models, sample sets, targets, text encoder) and
then looks for every path the run will read: the five sample-set folders, each target's files
(:func:`mll.targets.missing_target_paths`), each open_clip weight file, the Hugging Face
tokenizers some open_clip models use, the caption files when a caption directory is given, and
WordNet. All missing paths are reported at once, in one ``FileNotFoundError``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence

__all__ = ["check_text_encoder", "full_scale_problems", "check_full_scale", "check_caption_dir"]


def check_text_encoder(name: str) -> str:
    """``name`` if it is a registered text encoder (``Label_embedding.list_text_encoders()``), else ValueError."""
    from Label_embedding import list_text_encoders
    if name not in list_text_encoders():
        raise ValueError(f"unknown text encoder {name!r}; registered: {', '.join(list_text_encoders())}")
    return name


def check_caption_dir(captions_dir, names: Sequence[str]) -> None:
    """FileNotFoundError listing every ``{captions_dir}/{name}.json`` that is absent."""
    from .tasks import missing_caption_files
    missing = missing_caption_files(captions_dir, names)
    if missing:
        raise FileNotFoundError(f"caption directory {captions_dir}: missing caption files {missing}")


def _hf_cached(repo: str) -> bool:
    from huggingface_hub import constants
    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def _unknown(names: Sequence[str], known, what: str) -> List[str]:
    bad = [n for n in names if n not in known]
    return [f"unknown {what} {bad}; available: {sorted(known)}"] if bad else []


def full_scale_problems(*, sample_root, target_root, weights_dir, models: Sequence[str],
                        sample_sources: Sequence[str], targets: Sequence[str], captions_dir=None,
                        text_encoder: Optional[str] = None) -> tuple[List[str], List[str]]:
    """``(bad names, missing paths)`` of a full-scale run (both empty when it can start).

    ``sample_root`` / ``target_root`` default to ``$MLL_SAMPLE_DATA`` / ``$MLL_TARGET_DATA``;
    ``weights_dir`` to ``$MLL_OPENCLIP_WEIGHTS`` (see :func:`mll.vlm.openclip_weights_path`)."""
    from Label_embedding import list_text_encoders
    from .graph import SAMPLE_SOURCES, create_sample_source
    from .targets import TARGET_LOADERS, missing_target_paths
    from .vlm import openclip_hub, openclip_weights_path
    from .wordnet import DEFAULT_WORDNET_DIR

    hub = {f"{r['name']}@{r['pretrained']}": (r["name"], r["pretrained"]) for r in openclip_hub()}
    names = (_unknown(models, hub, "open_clip models") + _unknown(sample_sources, SAMPLE_SOURCES, "sample sets")
             + _unknown(targets, TARGET_LOADERS, "targets"))
    if text_encoder is not None and text_encoder not in list_text_encoders():
        names.append(f"unknown text encoder {text_encoder!r}; registered: {list_text_encoders()}")
    if not models or not targets or not sample_sources:
        names.append("a full-scale run needs at least one model, one target and one sample set")
    if names:
        return names, []

    missing: List[str] = []
    sample_root = sample_root or os.environ.get("MLL_SAMPLE_DATA")
    if sample_root is None:
        missing.append("sample-set root: pass --sample-root or set MLL_SAMPLE_DATA")
    else:
        for s in sample_sources:
            try:
                create_sample_source(s, sample_root)
            except FileNotFoundError as exc:
                missing.append(f"sample set {s}: {exc}")
    target_root = target_root or os.environ.get("MLL_TARGET_DATA")
    if target_root is None:
        missing.append("target root: pass --target-root or set MLL_TARGET_DATA")
    else:
        missing += missing_target_paths(targets, target_root)
    tokenizers = set()
    for m in models:
        arch, tag = hub[m]
        try:
            openclip_weights_path(arch, tag, weights_dir)
        except FileNotFoundError as exc:
            missing.append(f"model {m}: {exc}")
        tokenizers.add(_hf_tokenizer(arch))
    for repo in sorted(t for t in tokenizers if t):
        if not _hf_cached(repo):
            missing.append(f"Hugging Face tokenizer {repo!r} (used by open_clip models "
                           f"{sorted(m for m in models if _hf_tokenizer(hub[m][0]) == repo)}) is not in the local "
                           "Hugging Face cache")
    if captions_dir is not None:
        from .tasks import missing_caption_files
        missing += [f"captions: {p}" for p in missing_caption_files(captions_dir, targets)]
    wordnet = Path(os.environ.get("WORDNET_DIR") or DEFAULT_WORDNET_DIR)
    missing += [f"WordNet: {wordnet / f}" for f in ("data.noun", "index.noun") if not (wordnet / f).is_file()]
    return [], missing


def _hf_tokenizer(arch: str) -> Optional[str]:
    try:
        import open_clip
    except ImportError:
        return None
    cfg = open_clip.get_model_config(arch) or {}
    return cfg.get("text_cfg", {}).get("hf_tokenizer_name")


def check_full_scale(**kwargs) -> None:
    """:func:`full_scale_problems`, raised: ValueError for bad names, FileNotFoundError listing
    every missing path (one per line)."""
    names, missing = full_scale_problems(**kwargs)
    if names:
        raise ValueError("full-scale run: " + "; ".join(names))
    if missing:
        raise FileNotFoundError(f"full-scale run: {len(missing)} missing paths (nothing was started):\n  - "
                                + "\n  - ".join(missing))
