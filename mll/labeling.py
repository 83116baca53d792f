"""Model labeling (MLL, Tan et al., ICML 2025, Sec. 4.1, Eq. 2-4) and the growable model hub.

The paper's Eq. 2-4 are lost in the text we have; our reconstruction from the prose ("each model
undergoes pre-testing on the semantic graph ... labels which describe its capability on these
semantic classes"):

* Eq. 2 (zero-shot prediction on the graph): an image x of node v is classified among the
  candidate concepts C(v) = {v} U D(v) by Eq. 1,
  ``yhat_m(x) = argmax_{u in C(v)} cos(f_I^m(x), t_u^m)`` with ``t_u^m`` the model's normalised
  prompt-ensemble text embedding of the synset name of u (the model's own templates, default
  "a photo of a {name}.").
* Eq. 3 (per-node performance): ``a_m(v) = (1 / |X_v|) sum_{x in X_v} 1[yhat_m(x) = v]``, X_v the
  sample images of node v.
* Eq. 4 (model label): ``L_m = (a_m(v))_{v in V}``, a vector with one entry per graph node.

D(v) are ``n_distractors`` WordNet neighbours of v (siblings first, then cousins, ...; never an
ancestor or descendant, never a synset whose name equals v's: see
:meth:`mll.wordnet.WordNet.neighbourhood`). Because C(v) depends on v alone, not on which other
nodes are in the graph, labels are incremental exactly as the paper requires: adding a model labels
only that model, adding nodes labels only the new nodes, and nothing is ever relabelled.

Labels are cached per (graph name, protocol, model) as JSON ``{wnid: a_m(v)}`` under
``{label_dir}/mll/labels/{graph}/{protocol}/{model}.json`` (atomic writes, resumable).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from data.cache import atomic_save_json, atomic_save_npy

from .graph import ImageRef, SampleSource, SemanticGraph
from .vlm import VLM, image_features_batched
from .wordnet import WordNet

__all__ = ["LabelingProtocol", "node_candidates", "label_nodes", "graph_image_embeddings", "ModelHub"]


@dataclass(frozen=True)
class LabelingProtocol:
    """How a node is pre-tested: ``n_distractors`` WordNet neighbours compete with the node's own
    name; ``random_state`` seeds the choice among equally close neighbours."""

    n_distractors: int = 20
    random_state: int = 0

    def __post_init__(self):
        if self.n_distractors < 1:
            raise ValueError(f"n_distractors must be >= 1, got {self.n_distractors}")

    @property
    def key(self) -> str:
        return f"d{self.n_distractors}-rs{self.random_state}"


def node_candidates(wordnet: WordNet, wnid: str, protocol: LabelingProtocol) -> List[str]:
    """C(v): ``[v]`` followed by up to ``n_distractors`` neighbours with distinct names (none equal
    to v's name, whose prompt would be identical)."""
    names = {wordnet[wnid].name.lower()}
    out = [wnid]
    for u in wordnet.neighbourhood(wnid, 3 * protocol.n_distractors, random_state=protocol.random_state):
        name = wordnet[u].name.lower()
        if name not in names:
            names.add(name)
            out.append(u)
        if len(out) == protocol.n_distractors + 1:
            break
    return out


def graph_image_embeddings(vlm: VLM, graph: SemanticGraph, refs: Sequence[ImageRef],
                           cache_dir: Optional[str | os.PathLike] = None, *, progress: bool = False) -> np.ndarray:
    """(len(refs), E) embeddings of graph sample images, with an incremental on-disk cache.

    The first image stage (:meth:`mll.vlm.VLM.image_features`, shared by every VLM with the same
    ``image_feature_key``) of every graph image ever encoded is kept in
    ``{cache_dir}/mll/image_features/graph-{graph}/{feature key}.npy`` (rows) and ``.refs.json``
    (the ImageRef of each row); only images not stored yet are encoded, then both files are
    rewritten atomically (rows first, so a kill between the two writes leaves a usable cache)."""
    refs = list(refs)
    if not refs:
        raise ValueError("no images requested")
    if cache_dir is None:
        return vlm.embed_image_features(image_features_batched(vlm, graph.load_images(refs), progress=progress))
    base = Path(cache_dir) / "mll" / "image_features" / f"graph-{graph.name}"
    feat_path, refs_path = base / f"{vlm.image_feature_key}.npy", base / f"{vlm.image_feature_key}.refs.json"
    stored: List[ImageRef] = []
    feats = None
    if feat_path.is_file() and refs_path.is_file():
        with open(refs_path) as fh:
            stored = [ImageRef(s, int(i)) for s, i in json.load(fh)]
        feats = np.load(feat_path, allow_pickle=False)
        if feats.shape[0] < len(stored):           # inconsistent pair: start afresh
            stored, feats = [], None
        else:
            feats = feats[:len(stored)]
    index = {r: i for i, r in enumerate(stored)}
    missing = list(dict.fromkeys(r for r in refs if r not in index))
    if missing:
        new = image_features_batched(vlm, graph.load_images(missing), progress=progress,
                                     desc=f"{vlm.image_feature_key} on graph {graph.name}")
        feats = new if feats is None else np.concatenate([feats, new], axis=0)
        stored += missing
        index.update({r: len(stored) - len(missing) + i for i, r in enumerate(missing)})
        atomic_save_npy(feat_path, feats)
        atomic_save_json(refs_path, [[r.source, r.index] for r in stored])
    return vlm.embed_image_features(feats[[index[r] for r in refs]])


def label_nodes(vlm: VLM, graph: SemanticGraph, wnids: Sequence[str], protocol: LabelingProtocol = LabelingProtocol(),
                *, cache_dir: Optional[str | os.PathLike] = None, progress: bool = False) -> np.ndarray:
    """Eq. 3 for each node of ``wnids``: (len(wnids),) float64 zero-shot accuracies a_m(v).

    The sample images of all requested nodes are encoded once (first image stage cached under
    ``cache_dir``, see :func:`graph_image_embeddings`); the candidate concepts' prompts are embedded
    once."""
    wnids = list(wnids)
    if not wnids:
        return np.zeros(0)
    refs = sorted({r for w in wnids for r in graph.images_of(w)})
    if not refs:
        raise ValueError("the nodes to label have no sample images")
    row = {r: i for i, r in enumerate(refs)}
    emb = graph_image_embeddings(vlm, graph, refs, cache_dir, progress=progress)
    cands = {w: node_candidates(graph.wordnet, w, protocol) for w in wnids}
    concepts = sorted({u for c in cands.values() for u in c})
    col = {u: j for j, u in enumerate(concepts)}
    text = vlm.class_embeddings([vlm.prompts_for(graph.wordnet[u].name) for u in concepts])
    acc = np.empty(len(wnids))
    for i, w in enumerate(wnids):
        x = emb[[row[r] for r in graph.images_of(w)]]
        sims = x @ text[[col[u] for u in cands[w]]].T          # (|X_v|, |C(v)|)
        acc[i] = float(np.mean(np.argmax(sims, axis=1) == 0))
    return acc


class ModelHub:
    """A growable hub of VLMs with their labels on one semantic graph.

    ``add_model`` labels the new model on every node (only the nodes missing from its cached label);
    ``add_sources`` grows the graph and labels only the new nodes, for every model of the hub.
    ``label_dir=None`` keeps labels in memory only."""

    def __init__(self, graph: SemanticGraph, *, protocol: LabelingProtocol = LabelingProtocol(),
                 label_dir: Optional[str | os.PathLike] = None, cache_dir: Optional[str | os.PathLike] = None,
                 progress: bool = False):
        self.graph = graph
        self.protocol = protocol
        self.label_dir = None if label_dir is None else Path(label_dir)
        self.cache_dir = cache_dir
        self.progress = progress
        self.models: Dict[str, VLM] = {}
        self._labels: Dict[str, Dict[str, float]] = {}

    # -- storage --------------------------------------------------------------------------------
    def label_path(self, model: str) -> Optional[Path]:
        if self.label_dir is None:
            return None
        return self.label_dir / "mll" / "labels" / self.graph.name / self.protocol.key / f"{model}.json"

    def _load(self, model: str) -> Dict[str, float]:
        path = self.label_path(model)
        if path is None or not path.is_file():
            return {}
        with open(path) as fh:
            stored = json.load(fh)
        return {w: float(a) for w, a in stored["labels"].items()}

    def _save(self, model: str) -> None:
        path = self.label_path(model)
        if path is not None:
            atomic_save_json(path, {"model": model, "graph": self.graph.name, "protocol": self.protocol.key,
                                    "labels": self._labels[model]})

    def _label_missing(self, model: str) -> List[str]:
        todo = [w for w in self.graph.nodes if w not in self._labels[model]]
        if todo:
            acc = label_nodes(self.models[model], self.graph, todo, self.protocol, cache_dir=self.cache_dir,
                              progress=self.progress)
            self._labels[model].update({w: float(a) for w, a in zip(todo, acc)})
            self._save(model)
        return todo

    # -- growth ---------------------------------------------------------------------------------
    def add_model(self, vlm: VLM) -> List[str]:
        """Submission stage: label ``vlm`` on the graph (cached labels are reused). Returns the nodes
        that had to be pre-tested now."""
        if vlm.name in self.models:
            raise ValueError(f"model {vlm.name!r} is already in the hub")
        self.models[vlm.name] = vlm
        self._labels[vlm.name] = self._load(vlm.name)
        return self._label_missing(vlm.name)

    def add_sources(self, sources: Sequence[SampleSource], *, include_ancestors: bool = True) -> List[str]:
        """Grow the graph with sample sources; label only the new nodes, for every model. Returns
        the new nodes."""
        new = self.graph.add_sources(sources, include_ancestors=include_ancestors)
        for model in self.models:
            self._label_missing(model)
        return new

    # -- views ----------------------------------------------------------------------------------
    @property
    def model_names(self) -> List[str]:
        return list(self.models)

    def label(self, model: str) -> Dict[str, float]:
        """The label {wnid: a_m(v)} of ``model`` (a copy)."""
        if model not in self._labels:
            raise KeyError(f"model {model!r} is not in the hub; models: {self.model_names}")
        return dict(self._labels[model])

    def label_matrix(self, models: Optional[Sequence[str]] = None, nodes: Optional[Sequence[str]] = None) -> np.ndarray:
        """(M, V) matrix L[m, v] = a_m(v) (models and nodes in the given or the hub's order)."""
        models = self.model_names if models is None else list(models)
        nodes = self.graph.nodes if nodes is None else list(nodes)
        out = np.empty((len(models), len(nodes)))
        for i, m in enumerate(models):
            lab = self._labels.get(m)
            if lab is None:
                raise KeyError(f"model {m!r} is not in the hub; models: {self.model_names}")
            missing = [w for w in nodes if w not in lab]
            if missing:
                raise KeyError(f"model {m!r} has no label on nodes {missing[:5]}")
            out[i] = [lab[w] for w in nodes]
        return out
