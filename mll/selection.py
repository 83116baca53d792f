"""Model selection (MLL, Tan et al., ICML 2025, Sec. 4.2, Eq. 5-7).

Given a target task with classes c = 1..C, its class descriptions (captions) and the graph's node
captions are embedded with one text encoder; the reconstruction of the lost equations:

* Transfer matrix T (C, V): ``S[c, v] = cos(e(caption_c), e(caption_v))``;
  ``T[c, v] = max(S[c, v], 0)`` if v is among the ``k_nodes`` nodes most similar to class c, else 0;
  each row normalised to sum 1. V_S = nodes with a non-zero column (the *selected* nodes).
* Eq. 5 (per-node precision on the selected nodes): ``P[m, v] = a_m(v)`` for v in V_S, the model
  label restricted to V_S (see :mod:`mll.labeling` for a_m).
* Eq. 6 (predicted per-class performance): ``Phat[c, m] = sum_{v in V_S} T[c, v] P[m, v]``, (C, M).
* Eq. 7 (reuse metric): ``R[c, m] = alpha * Phat[c, m] + (1 - alpha) * (1/C) sum_{c'} Phat[c', m]``:
  class-specific performance balanced with the model's predicted overall performance on the task
  (the paper: alpha = 0.7).

Class descriptions come from :func:`generate_class_descriptions` (deterministic, from class name,
domain, task and the WordNet definition where the name matches a synset; the offline replacement of
the paper's GPT-4 captions) or from a user JSON ``{class name: [caption, ...]}``
(:func:`load_class_captions`).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Union

import numpy as np

from .vlm import l2_normalise
from .wordnet import WordNet

__all__ = ["generate_class_descriptions", "load_class_captions", "embed_captions", "transfer_matrix",
           "selected_nodes", "node_precision", "predicted_class_performance", "reuse_metric",
           "SelectionResult", "select_models", "DEFAULT_ALPHA", "DEFAULT_K_NODES"]

DEFAULT_ALPHA = 0.7     # MLL Sec. 5.2
DEFAULT_K_NODES = 5     # top-k graph nodes per class (not given in the paper)


# -- class descriptions --------------------------------------------------------------------------
def _wordnet_definition(name: str, wordnet: WordNet) -> Optional[str]:
    """Definition of the most frequent noun sense of ``name`` or, failing that, of its parts
    (split at " - ", "/", "," and "(" ; e.g. "0 - zero" -> "zero", "T-shirt/top" -> "T-shirt")."""
    candidates = [name] + [p for p in re.split(r"\s+-\s+|/|,|\(|\)", name) if p.strip()]
    for cand in candidates:
        senses = wordnet.lookup(cand.strip())
        if senses:
            return wordnet[senses[0]].definition
    return None


def generate_class_descriptions(classnames: Sequence[str], domain: str, task: str,
                                wordnet: Optional[WordNet] = None) -> List[List[str]]:
    """Deterministic class captions (one list per class) from the task's general information.

    For class ``name``: ``"{name} which is {definition}"`` when WordNet knows the name (the node
    caption format, so matching classes land on their own synset), then
    ``"a {domain} of a {name}."`` and ``"{name}, seen in a {domain} for {task}."``."""
    if isinstance(classnames, str) or not classnames:
        raise ValueError("classnames must be a non-empty list of strings")
    if not domain or not task:
        raise ValueError("domain and task must be non-empty strings")
    out = []
    for name in classnames:
        caps = []
        if wordnet is not None:
            definition = _wordnet_definition(name, wordnet)
            if definition:
                caps.append(f"{name} which is {definition}")
        caps += [f"a {domain} of a {name}.", f"{name}, seen in a {domain} for {task}."]
        out.append(caps)
    return out


def load_class_captions(source: Union[str, os.PathLike, Mapping], classnames: Sequence[str]) -> List[List[str]]:
    """Captions per class from a JSON file (or an already-loaded mapping) in the format of the
    paper's released captions: ``{class name: caption}`` or ``{class name: [caption, ...]}``.
    Every class of ``classnames`` must be present (ValueError naming the missing ones)."""
    if isinstance(source, Mapping):
        mapping = source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"caption file {path} does not exist")
        with open(path) as fh:
            mapping = json.load(fh)
    missing = [c for c in classnames if c not in mapping]
    if missing:
        raise ValueError(f"captions missing for classes {missing[:10]}")
    out = []
    for c in classnames:
        caps = [mapping[c]] if isinstance(mapping[c], str) else list(mapping[c])
        if not caps or not all(isinstance(s, str) and s for s in caps):
            raise ValueError(f"class {c!r}: captions must be a non-empty string or list of strings")
        out.append(caps)
    return out


def embed_captions(text_encoder, captions: Sequence[Union[str, Sequence[str]]]) -> np.ndarray:
    """(C, E): row c = normalised mean of the normalised embeddings of item c's caption(s).
    ``text_encoder.encode(texts) -> (N, E)``."""
    groups = [[c] if isinstance(c, str) else list(c) for c in captions]
    if not groups or any(not g for g in groups):
        raise ValueError("every item needs at least one caption")
    flat = [s for g in groups for s in g]
    emb = l2_normalise(np.asarray(text_encoder.encode(flat), dtype=np.float32))
    bounds = np.cumsum([0] + [len(g) for g in groups])
    return l2_normalise(np.stack([emb[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])]))


# -- Eq. 5-7 -------------------------------------------------------------------------------------
def transfer_matrix(class_embeddings: np.ndarray, node_embeddings: np.ndarray, k_nodes: int = DEFAULT_K_NODES) -> np.ndarray:
    """T (C, V): top-``k_nodes`` cosine similarities per class (negatives clipped to 0), each row
    normalised to sum 1; ties broken towards the lower node index.

    ``class_embeddings`` (C, E) and ``node_embeddings`` (V, E) are L2-normalised here (inputs are
    not modified). A class whose top nodes all have similarity <= 0 raises ValueError."""
    a = l2_normalise(np.asarray(class_embeddings, dtype=np.float64))
    b = l2_normalise(np.asarray(node_embeddings, dtype=np.float64))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding shapes {a.shape} and {b.shape} are not (C, E) and (V, E)")
    if not 1 <= k_nodes <= b.shape[0]:
        raise ValueError(f"k_nodes must be in [1, {b.shape[0]}] (number of nodes), got {k_nodes}")
    sims = a @ b.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k_nodes]
    t = np.zeros_like(sims)
    np.put_along_axis(t, top, np.clip(np.take_along_axis(sims, top, axis=1), 0.0, None), axis=1)
    sums = t.sum(axis=1, keepdims=True)
    bad = np.flatnonzero(sums[:, 0] <= 0)
    if bad.size:
        raise ValueError(f"classes {bad.tolist()[:10]} have no graph node with positive caption similarity")
    return t / sums


def selected_nodes(transfer: np.ndarray) -> np.ndarray:
    """Indices of V_S: the nodes with a non-zero column of T (sorted)."""
    return np.flatnonzero(np.asarray(transfer).sum(axis=0) > 0)


def node_precision(labels: np.ndarray, transfer: np.ndarray) -> np.ndarray:
    """Eq. 5: P (M, |V_S|) = labels[:, V_S]; ``labels`` (M, V) are the models' labels a_m(v)."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[1] != np.shape(transfer)[1]:
        raise ValueError(f"labels {labels.shape} must be (M, V) with V = {np.shape(transfer)[1]}")
    return labels[:, selected_nodes(transfer)]


def predicted_class_performance(transfer: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Eq. 6: Phat (C, M) = T[:, V_S] @ P.T."""
    transfer = np.asarray(transfer, dtype=np.float64)
    return transfer[:, selected_nodes(transfer)] @ node_precision(labels, transfer).T


def reuse_metric(predicted: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Eq. 7: R (C, M) = alpha * Phat + (1 - alpha) * mean over classes of Phat (per model)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    p = np.asarray(predicted, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"predicted performance must be (C, M), got {p.shape}")
    return alpha * p + (1.0 - alpha) * p.mean(axis=0, keepdims=True)


@dataclass(frozen=True)
class SelectionResult:
    """Outcome of MLL's selection for one task: ``scores[c, m]`` is the reuse metric R (Eq. 7)."""

    models: List[str]
    classes: List[str]
    transfer: np.ndarray        # (C, V)
    predicted: np.ndarray       # (C, M), Eq. 6
    scores: np.ndarray          # (C, M), Eq. 7

    def restrict(self, models: Sequence[str], alpha: float) -> "SelectionResult":
        """The same selection over a subset of the hub's models (for hub-growth experiments)."""
        idx = [self.models.index(m) for m in models]
        pred = self.predicted[:, idx]
        return SelectionResult(list(models), self.classes, self.transfer, pred, reuse_metric(pred, alpha))

    def with_alpha(self, alpha: float) -> "SelectionResult":
        return SelectionResult(self.models, self.classes, self.transfer, self.predicted,
                               reuse_metric(self.predicted, alpha))


def select_models(labels: np.ndarray, model_names: Sequence[str], class_embeddings: np.ndarray,
                  node_embeddings: np.ndarray, classnames: Sequence[str], *, k_nodes: int = DEFAULT_K_NODES,
                  alpha: float = DEFAULT_ALPHA) -> SelectionResult:
    """Eq. 5-7 for one task: ``labels`` (M, V) of the hub's models on the graph nodes (same node
    order as ``node_embeddings`` (V, E)), ``class_embeddings`` (C, E) of the task's captions."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.shape[0] != len(model_names):
        raise ValueError(f"labels have {labels.shape[0]} rows for {len(model_names)} models")
    if np.shape(class_embeddings)[0] != len(classnames):
        raise ValueError(f"{np.shape(class_embeddings)[0]} class embeddings for {len(classnames)} classes")
    t = transfer_matrix(class_embeddings, node_embeddings, k_nodes)
    pred = predicted_class_performance(t, labels)
    return SelectionResult(list(model_names), list(classnames), t, pred, reuse_metric(pred, alpha))
