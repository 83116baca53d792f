"""Model selection (MLL, Tan et al., ICML 2025, Sec. 4.2, Eq. 5-7).

Given a target task with classes c = 1..C, its class captions and the graph's node captions are
embedded with one text encoder, ``cos[c, v] = cos(e(captions_c), e(caption_v))``. Each step is a
registry entry (the released code is the default, ``selection.py``; see docs/mll.md):

* transfer matrix S (C, V), :data:`TRANSFERS`: ``"released"`` ``S[c, v] = 100 cos[c, v]`` on the
  ``k_nodes`` (5) nodes closest to class c, else 0 (no clipping, no normalisation);
  ``"reconstruction"`` the same top-k, ``max(cos, 0)``, each row normalised to sum 1. V_S = nodes
  with a non-zero column (the *selected* nodes).
* per-node counts of each model on V_S, ``[TP_v, FP_v, P_v]`` (:meth:`mll.labeling.ModelHub.node_counts`).
* class score F (C, M), :data:`CLASS_SCORES`, from the similarity-weighted sums
  ``X_c = sum_v S[c, v] X_v`` (X = TP, FP, P): ``"f1"`` (released default) ``2 TP_c / (2 TP_c + FP_c + P_c)``,
  ``"precision"`` ``TP_c / (TP_c + FP_c)``, ``"recall"`` ``TP_c / P_c``, and ``"accuracy"`` (our
  reconstruction's Eq. 6) ``sum_v S[c, v] TP_v / P_v``. A zero denominator gives 0 (no evidence).
* Eq. 7, :data:`EQ7_FORMS`: ``"others"`` (released) ``R[c, m] = alpha F[c, m] + (1 - alpha)
  mean_{c' != c} F[c', m]``; ``"all"`` (reconstruction) the mean over all classes; alpha = 0.7.

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
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from common import Registry

from .vlm import l2_normalise
from .wordnet import WordNet

__all__ = ["generate_class_descriptions", "load_class_captions", "embed_captions", "transfer_matrix",
           "released_transfer", "reconstruction_transfer", "TRANSFERS", "selected_nodes", "class_scores",
           "CLASS_SCORES", "EQ7_FORMS", "reuse_metric", "SelectionResult", "select_models", "DEFAULT_ALPHA",
           "DEFAULT_K_NODES"]

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
def _cosines(class_embeddings: np.ndarray, node_embeddings: np.ndarray, k_nodes: int) -> Tuple[np.ndarray, np.ndarray]:
    a = l2_normalise(np.asarray(class_embeddings, dtype=np.float64))
    b = l2_normalise(np.asarray(node_embeddings, dtype=np.float64))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding shapes {a.shape} and {b.shape} are not (C, E) and (V, E)")
    if not 1 <= k_nodes <= b.shape[0]:
        raise ValueError(f"k_nodes must be in [1, {b.shape[0]}] (number of nodes), got {k_nodes}")
    sims = a.astype(np.float64) @ b.astype(np.float64).T
    return sims, np.argsort(-sims, axis=1, kind="stable")[:, :k_nodes]


def released_transfer(class_embeddings: np.ndarray, node_embeddings: np.ndarray, k_nodes: int = DEFAULT_K_NODES,
                      *, scale: float = 100.0) -> np.ndarray:
    """S (C, V): ``scale * cos`` on each class's top-``k_nodes`` nodes, 0 elsewhere (released)."""
    sims, top = _cosines(class_embeddings, node_embeddings, k_nodes)
    t = np.zeros_like(sims)
    np.put_along_axis(t, top, scale * np.take_along_axis(sims, top, axis=1), axis=1)
    return t


def reconstruction_transfer(class_embeddings: np.ndarray, node_embeddings: np.ndarray,
                            k_nodes: int = DEFAULT_K_NODES) -> np.ndarray:
    """T (C, V): top-``k_nodes`` cosine similarities per class (negatives clipped to 0), each row
    normalised to sum 1; ties broken towards the lower node index. A class whose top nodes all have
    similarity <= 0 raises ValueError."""
    sims, top = _cosines(class_embeddings, node_embeddings, k_nodes)
    t = np.zeros_like(sims)
    np.put_along_axis(t, top, np.clip(np.take_along_axis(sims, top, axis=1), 0.0, None), axis=1)
    sums = t.sum(axis=1, keepdims=True)
    bad = np.flatnonzero(sums[:, 0] <= 0)
    if bad.size:
        raise ValueError(f"classes {bad.tolist()[:10]} have no graph node with positive caption similarity")
    return t / sums


TRANSFERS: Registry[Callable[..., np.ndarray]] = Registry("transfer matrix")
TRANSFERS.add("released", released_transfer)
TRANSFERS.add("reconstruction", reconstruction_transfer)


def transfer_matrix(class_embeddings: np.ndarray, node_embeddings: np.ndarray, k_nodes: int = DEFAULT_K_NODES,
                    kind: str = "released") -> np.ndarray:
    """The transfer matrix (C, V) of :data:`TRANSFERS` ``kind``; inputs are not modified."""
    return TRANSFERS[kind](class_embeddings, node_embeddings, k_nodes)


def selected_nodes(transfer: np.ndarray) -> np.ndarray:
    """Indices of V_S: the nodes with a non-zero column of the transfer matrix (sorted)."""
    return np.flatnonzero(np.any(np.asarray(transfer) != 0, axis=0))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _weighted(transfer: np.ndarray, counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, M) each: ``sum_v S[c, v] X[m, v]`` for X = TP, FP, P."""
    return tuple(transfer @ counts[:, j, :].T for j in range(3))


def _f1(transfer, counts):
    tp, fp, p = _weighted(transfer, counts)
    return _ratio(2 * tp, 2 * tp + fp + p)


def _precision(transfer, counts):
    tp, fp, _ = _weighted(transfer, counts)
    return _ratio(tp, tp + fp)


def _recall(transfer, counts):
    tp, _, p = _weighted(transfer, counts)
    return _ratio(tp, p)


def _accuracy(transfer, counts):
    return transfer @ _ratio(counts[:, 0, :], counts[:, 2, :]).T


CLASS_SCORES: Registry[Callable[[np.ndarray, np.ndarray], np.ndarray]] = Registry("class score")
CLASS_SCORES.add("f1", _f1)
CLASS_SCORES.add("precision", _precision)
CLASS_SCORES.add("recall", _recall)
CLASS_SCORES.add("accuracy", _accuracy)


def class_scores(transfer: np.ndarray, counts: np.ndarray, score: str = "f1") -> np.ndarray:
    """F (C, M): the :data:`CLASS_SCORES` ``score`` of each model on each class.

    ``transfer`` (C, V) and ``counts`` (M, 3, V) ``[TP, FP, P]`` over the same V nodes (normally V_S)."""
    transfer = np.asarray(transfer, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if transfer.ndim != 2 or counts.ndim != 3 or counts.shape[1] != 3 or counts.shape[2] != transfer.shape[1]:
        raise ValueError(f"transfer {transfer.shape} and counts {counts.shape} must be (C, V) and (M, 3, V)")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ValueError("counts must be finite and non-negative")
    return CLASS_SCORES[score](transfer, counts)


EQ7_FORMS = ("others", "all")


def reuse_metric(scores: np.ndarray, alpha: float = DEFAULT_ALPHA, form: str = "others") -> np.ndarray:
    """Eq. 7: R (C, M) = alpha * F + (1 - alpha) * the mean of F over the other classes (``form=
    "others"``, released; needs C >= 2) or over all classes (``"all"``, reconstruction), per model."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if form not in EQ7_FORMS:
        raise ValueError(f"Eq. 7 form must be one of {EQ7_FORMS}, got {form!r}")
    p = np.asarray(scores, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"class scores must be (C, M), got {p.shape}")
    if form == "all":
        return alpha * p + (1.0 - alpha) * p.mean(axis=0, keepdims=True)
    if p.shape[0] < 2:
        raise ValueError("Eq. 7 over the other classes needs at least two classes")
    others = (p.sum(axis=0, keepdims=True) - p) / (p.shape[0] - 1)
    return alpha * p + (1.0 - alpha) * others


@dataclass(frozen=True)
class SelectionResult:
    """Outcome of MLL's selection for one task: ``predicted`` (C, M) the class scores F,
    ``scores`` (C, M) the reuse metric R (Eq. 7, ``eq7`` its form)."""

    models: List[str]
    classes: List[str]
    transfer: np.ndarray        # (C, V)
    predicted: np.ndarray       # (C, M), class scores F
    scores: np.ndarray          # (C, M), Eq. 7
    eq7: str = "others"

    def restrict(self, models: Sequence[str], alpha: float) -> "SelectionResult":
        """The same selection over a subset of the hub's models (for hub-growth experiments)."""
        idx = [self.models.index(m) for m in models]
        pred = self.predicted[:, idx]
        return SelectionResult(list(models), self.classes, self.transfer, pred, reuse_metric(pred, alpha, self.eq7),
                               self.eq7)

    def with_alpha(self, alpha: float) -> "SelectionResult":
        return SelectionResult(self.models, self.classes, self.transfer, self.predicted,
                               reuse_metric(self.predicted, alpha, self.eq7), self.eq7)


NodeCounts = Union[np.ndarray, Callable[[Sequence[int]], np.ndarray]]


def select_models(node_counts: NodeCounts, model_names: Sequence[str], class_embeddings: np.ndarray,
                  node_embeddings: np.ndarray, classnames: Sequence[str], *, k_nodes: int = DEFAULT_K_NODES,
                  alpha: float = DEFAULT_ALPHA, transfer: str = "released", score: str = "f1",
                  eq7: str = "others") -> SelectionResult:
    """Eq. 5-7 for one task. ``node_counts``: (M, 3, V) ``[TP, FP, P]`` of the hub's models on all
    graph nodes (same node order as ``node_embeddings`` (V, E)), or a callable ``f(V_S indices) ->
    (M, 3, |V_S|)`` (counts depend on V_S with the definition protocol); ``class_embeddings`` (C, E)."""
    if np.shape(class_embeddings)[0] != len(classnames):
        raise ValueError(f"{np.shape(class_embeddings)[0]} class embeddings for {len(classnames)} classes")
    t = transfer_matrix(class_embeddings, node_embeddings, k_nodes, transfer)
    vs = selected_nodes(t)
    counts = node_counts(vs) if callable(node_counts) else np.asarray(node_counts, dtype=np.float64)[:, :, vs]
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (len(model_names), 3, len(vs)):
        raise ValueError(f"node counts have shape {counts.shape}, expected {(len(model_names), 3, len(vs))} "
                         "(models, [TP, FP, P], selected nodes)")
    pred = class_scores(t[:, vs], counts, score)
    return SelectionResult(list(model_names), list(classnames), t, pred, reuse_metric(pred, alpha, eq7), eq7)
