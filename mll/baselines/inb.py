"""INB, the ImageNet Baseline of VLM selection (MLL paper, Tan et al. ICML 2025, Sec. 5.1; LOVM,
Zohar et al. NeurIPS 2023, "a_IN" baseline).

INB ignores the target task: every model m of the hub is scored by its zero-shot ImageNet-1k
accuracy a_IN(m), and the model with the highest score is selected for every target dataset::

    m_hat = argmax_m a_IN(m)

Tie rule (deterministic, independent of the order of the mapping): among models with exactly the
same score, the one whose name sorts first (Python ``str`` order) wins; :func:`inb_rank` orders by
score descending and, within a tie, by name ascending. :func:`inb_select` is ``inb_rank(...)[0]``.
"""
from __future__ import annotations

import math
from typing import List, Mapping

import pandas as pd

__all__ = ["inb_select", "inb_rank", "inb_scores", "rank_by_score"]


def inb_scores(imagenet_scores: Mapping[str, float]) -> pd.Series:
    """Validate ``imagenet_scores`` (model name -> ImageNet zero-shot accuracy) and return it as a
    float Series indexed by model name (a new object; the caller's mapping is not modified).

    Raises ``ValueError`` on an empty mapping, a non-string or empty model name, or a score that is
    not a finite number.
    """
    if isinstance(imagenet_scores, pd.Series):
        items = list(imagenet_scores.items())
    elif isinstance(imagenet_scores, Mapping):
        items = list(imagenet_scores.items())
    else:
        raise ValueError(f"imagenet_scores must be a mapping model -> score, got {type(imagenet_scores).__name__}")
    if not items:
        raise ValueError("imagenet_scores is empty: INB needs at least one model")
    names, values = [], []
    for name, score in items:
        if not isinstance(name, str) or not name:
            raise ValueError(f"model names must be non-empty strings, got {name!r}")
        try:
            value = float(score)
        except (TypeError, ValueError):
            raise ValueError(f"ImageNet score of model {name!r} is not a number: {score!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"ImageNet score of model {name!r} is not finite: {score!r}")
        names.append(name)
        values.append(value)
    if len(set(names)) != len(names):
        raise ValueError("imagenet_scores has duplicate model names")
    return pd.Series(values, index=pd.Index(names, name="model"), name="imagenet_acc", dtype=float)


def rank_by_score(scores: pd.Series) -> List[str]:
    """Model names ordered by ``scores`` descending, ties broken by name ascending (deterministic).

    Shared by INB and ModelGPT so every selector in this package uses the same tie rule.
    """
    if scores.isna().any():
        raise ValueError(f"scores contain NaN for models {list(scores.index[scores.isna()])}")
    order = sorted(scores.index, key=lambda m: (-float(scores[m]), str(m)))
    return [str(m) for m in order]


def inb_rank(imagenet_scores: Mapping[str, float]) -> List[str]:
    """All models ordered best-first by ImageNet accuracy (ties: name ascending)."""
    return rank_by_score(inb_scores(imagenet_scores))


def inb_select(imagenet_scores: Mapping[str, float]) -> str:
    """The model INB selects: the highest ImageNet accuracy; on a tie, the name that sorts first."""
    return inb_rank(imagenet_scores)[0]
