"""Model labeling (MLL, Tan et al., ICML 2025, Sec. 4.1, Eq. 2-4) and the growable model hub.

Two labeling protocols (:data:`LABELING_PROTOCOLS`, see docs/mll.md):

``"definitions"`` (:class:`DefinitionProtocol`, the released code ``label.py``, our default)
    every graph image is classified by the model against the nodes with the node's WordNet
    *definition alone* as its text (logits ``100 cos``). What is stored per model are embeddings:
    the image embeddings of the graph images (their first stage, cached per image, see
    :func:`graph_image_embeddings`) and the text embeddings of the node definitions (cached per
    wnid, :class:`NodeTextCache`). At selection time the argmax is restricted to the task's
    selected nodes V_S and computed blockwise over the images of *every* node
    (:func:`definition_counts`): ``TP_v`` = images of v predicted v, ``FP_v`` = images of other
    nodes predicted v, ``P_v = |X_v|`` (one count per (node, image) membership).

``"candidates"`` (:class:`LabelingProtocol`, our reconstruction)
    an image x of node v is classified among C(v) = {v} + ``n_distractors`` WordNet neighbours of v
    with the model's prompts of the synset names; the label is ``a_m(v) = mean_{x in X_v}
    1[argmax_{u in C(v)} cos(f(x), t_u) = v]``, cached as JSON
    ``{label_dir}/mll/labels/{graph}/{protocol}/{model}.json``. As node counts:
    ``TP_v = a_m(v) |X_v|``, ``P_v = |X_v|``, ``FP_v = 0`` (not measured).

Both are incremental: adding a model computes only that model's entries, adding nodes only the new
nodes' text embeddings / labels and their images' first stage; nothing is recomputed.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from common import Registry
from data.cache import (MODIFIED, CacheCorruptError, atomic_save_json, check_entry, check_record, entry_lock,
                        load_entry, load_json, read_record, remove_stale_temps, save_entry, save_json_entry,
                        stale_note)

from .graph import ImageRef, SampleSource, SemanticGraph
from .vlm import VLM, image_features_batched, l2_normalise
from .wordnet import WordNet

__all__ = ["LabelingProtocol", "DefinitionProtocol", "LABELING_PROTOCOLS", "create_labeling_protocol",
           "node_candidates", "label_nodes", "ImageFeatureCache", "graph_image_embeddings",
           "NodeTextCache", "definition_counts", "ModelHub"]

#: rows of image embeddings processed at once by :func:`definition_counts`
BLOCK_ROWS = 16384


@dataclass(frozen=True)
class LabelingProtocol:
    """Our reconstruction ("candidates"): ``n_distractors`` WordNet neighbours compete with the
    node's own name; ``random_state`` seeds the choice among equally close neighbours."""

    n_distractors: int = 20
    random_state: int = 0
    kind = "candidates"

    def __post_init__(self):
        if self.n_distractors < 1:
            raise ValueError(f"n_distractors must be >= 1, got {self.n_distractors}")

    @property
    def key(self) -> str:
        return f"d{self.n_distractors}-rs{self.random_state}"


@dataclass(frozen=True)
class DefinitionProtocol:
    """The released protocol ("definitions"): node text = WordNet definition alone, every image
    against the nodes, logits ``logit_scale * cos`` (the scale does not change an argmax)."""

    logit_scale: float = 100.0
    kind = "definitions"

    @property
    def key(self) -> str:
        return "definitions"

    @staticmethod
    def text(wordnet: WordNet, wnid: str) -> str:
        return wordnet[wnid].definition


LABELING_PROTOCOLS: Registry = Registry("labeling protocol")
LABELING_PROTOCOLS.add("candidates", LabelingProtocol)
LABELING_PROTOCOLS.add("definitions", DefinitionProtocol)


def create_labeling_protocol(name: str, **kwargs):
    """``LABELING_PROTOCOLS[name](**kwargs)``, e.g. ``("candidates", n_distractors=20)``."""
    return LABELING_PROTOCOLS[name](**kwargs)


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


# -- image features of the graph images ---------------------------------------------------------
class ImageFeatureCache:
    """The first image stage (:meth:`mll.vlm.VLM.image_features`, shared by every VLM with the same
    ``image_feature_key``) of graph images, grown image by image.

    With ``cache_dir`` the rows live in ``{cache_dir}/mll/image_features/graph-{graph}/{key}.npy``
    and the ImageRef of each row in ``{key}.refs.json`` (rows written first, so a kill between the
    two writes leaves a usable pair); without, in memory. The rows' provenance record holds
    ``{"graph": graph name, "image_stage": stage}`` (``stage``: :meth:`mll.vlm.VLM.image_stage_record`
    of the VLMs sharing ``feature_key``): rows made by another backbone / weights / preprocessing
    are dropped, with a note, and encoded again."""

    def __init__(self, graph: SemanticGraph, feature_key: str, cache_dir: Optional[str | os.PathLike] = None,
                 *, stage: dict):
        if stage.get("key") != feature_key:
            raise ValueError(f"image stage record {stage!r} is not the one of feature key {feature_key!r}")
        self.graph, self.feature_key = graph, feature_key
        self.made_from = {"graph": graph.name, "image_stage": dict(stage)}
        self.base = None if cache_dir is None else Path(cache_dir) / "mll" / "image_features" / f"graph-{graph.name}"
        self.refs: List[ImageRef] = []
        self.features: Optional[np.ndarray] = None
        self.index: Dict[ImageRef, int] = {}
        self._loaded = False

    @property
    def paths(self) -> Tuple[Path, Path]:
        return self.base / f"{self.feature_key}.npy", self.base / f"{self.feature_key}.refs.json"

    def _load(self) -> None:
        if self._loaded or self.base is None:
            self._loaded = True
            return
        feat_path, refs_path = self.paths
        if feat_path.is_file() and refs_path.is_file():
            check = check_entry(feat_path, self.made_from)
            with open(refs_path) as fh:
                refs = [ImageRef(s, int(i)) for s, i in json.load(fh)]
            feats = np.load(feat_path, mmap_mode="r", allow_pickle=False) if check.valid else None
            if feats is not None and feats.shape[0] >= len(refs):
                self.refs, self.features = refs, feats[:len(refs)]
                self.index = {r: i for i, r in enumerate(refs)}
            else:
                why = check.reason or f"{feats.shape[0]} rows for {len(refs)} image references in {refs_path.name}"
                print(stale_note("graph image features", feat_path, why, "encoding the images again"))
        self._loaded = True

    def ensure(self, vlm: VLM, refs: Sequence[ImageRef], *, progress: bool = False) -> int:
        """Encode the images of ``refs`` not stored yet; returns how many were encoded. On disk the
        read-encode-write happens under :func:`data.cache.entry_lock` of the features file, after
        re-reading it: two runs (or Ray tasks) sharing the cache never lose each other's rows."""
        self._load()
        if all(r in self.index for r in refs):
            return 0
        if self.base is None:
            return self._encode(vlm, refs, progress)
        feat_path, refs_path = self.paths
        with entry_lock(feat_path):
            remove_stale_temps(feat_path)
            remove_stale_temps(refs_path)
            self._loaded = False
            self._load()                                  # what another writer may have added
            return self._encode(vlm, refs, progress)

    def _encode(self, vlm: VLM, refs: Sequence[ImageRef], progress: bool) -> int:
        missing = list(dict.fromkeys(r for r in refs if r not in self.index))
        if not missing:
            return 0
        new = image_features_batched(vlm, self.graph.load_images(missing), progress=progress,
                                     desc=f"{vlm.image_feature_key} on graph {self.graph.name}")
        feats = new if self.features is None else np.concatenate([np.asarray(self.features), new], axis=0)
        self.index.update({r: len(self.refs) + i for i, r in enumerate(missing)})
        self.refs = self.refs + missing
        self.features = feats
        if self.base is not None:
            feat_path, refs_path = self.paths
            save_entry(feat_path, np.asarray(feats), self.made_from)
            atomic_save_json(refs_path, [[r.source, r.index] for r in self.refs])
        return len(missing)

    def rows(self, refs: Sequence[ImageRef]) -> np.ndarray:
        missing = [r for r in refs if r not in self.index]
        if missing:
            raise KeyError(f"images {missing[:3]} have no stored features (call ensure() first)")
        return np.asarray([self.index[r] for r in refs], dtype=np.int64)


def graph_image_embeddings(vlm: VLM, graph: SemanticGraph, refs: Sequence[ImageRef],
                           cache_dir: Optional[str | os.PathLike] = None, *, progress: bool = False,
                           store: Optional[ImageFeatureCache] = None) -> np.ndarray:
    """(len(refs), E) embeddings of graph sample images; the first image stage is cached
    (:class:`ImageFeatureCache`; ``store`` to reuse one, else one on ``cache_dir``) and only images
    not stored yet are encoded."""
    refs = list(refs)
    if not refs:
        raise ValueError("no images requested")
    store = store if store is not None else ImageFeatureCache(graph, vlm.image_feature_key, cache_dir,
                                                              stage=vlm.image_stage_record())
    store.ensure(vlm, refs, progress=progress)
    return vlm.embed_image_features(np.asarray(store.features[store.rows(refs)]))


class NodeTextCache:
    """Unit text embeddings of one model for node texts ``text(wordnet, wnid)`` (default: the
    WordNet definition), grown wnid by wnid and graph independent.

    With ``cache_dir``: ``{cache_dir}/mll/node_text/{tag}/{model}.npy`` (row i) and its index
    ``.json`` (``[[wnid, text], ...]``, entry i). A row is reused only while its text still matches,
    and the rows only while the record's ``{"model", "tag", "text_stage"}`` (``stage``:
    :meth:`mll.vlm.VLM.text_stage_record`) matches; the index's own record names the sha256 of the
    rows it indexes, so an index that belongs to other rows (a writer killed between the two files,
    an edited file) is noticed. Otherwise the rows are dropped, with a note. Reading and the
    read-encode-write of :meth:`ensure` run under :func:`data.cache.entry_lock` of the rows, after
    re-reading them: two runs sharing the directory never lose or misalign each other's rows."""

    def __init__(self, model: str, wordnet: WordNet, *, text=None, tag: str = "definitions",
                 cache_dir: Optional[str | os.PathLike] = None, stage: Optional[dict] = None):
        self.model, self.wordnet, self.tag = model, wordnet, tag
        self.text = DefinitionProtocol.text if text is None else text
        self.base = None if cache_dir is None else Path(cache_dir) / "mll" / "node_text" / tag
        self.made_from = {"model": model, "tag": tag, "text_stage": None if stage is None else dict(stage)}
        self.rows: Dict[str, Tuple[int, str]] = {}
        self.emb: Optional[np.ndarray] = None
        if self.base is not None:
            with entry_lock(self.paths[0]):
                self._read()

    @property
    def paths(self) -> Tuple[Path, Path]:
        return self.base / f"{self.model}.npy", self.base / f"{self.model}.json"

    def _index_made_from(self, rows_sha256: str) -> dict:
        return {**self.made_from, "rows_sha256": rows_sha256}

    def _read(self) -> None:
        """Replace the rows in memory by the stored ones (call under the lock)."""
        npy, js = self.paths
        if not (npy.is_file() or js.is_file()):
            return
        check = check_record(npy, self.made_from)            # the bytes are hashed once, by load_entry
        why = check.reason or f"the rows file is missing (only its index {js.name} is there)"
        if check.valid and not js.is_file():
            why = f"its index {js.name} is missing"
        elif check.valid:
            try:
                emb, rec = load_entry(npy)
            except CacheCorruptError:
                print(stale_note("node-text embeddings", npy, MODIFIED, "encoding the texts again"))
                return
            index = check_entry(js, self._index_made_from(rec["sha256"]))
            entries = load_json(js) if index.valid else None
            if entries is not None and len(entries) == emb.shape[0]:
                self.emb = emb
                self.rows = {w: (i, t) for i, (w, t) in enumerate(entries)}
                return
            why = (f"its index {js.name} does not belong to these rows ({index.reason})" if not index.valid
                   else f"{emb.shape[0]} rows for {len(entries)} texts in {js.name}")
        print(stale_note("node-text embeddings", npy, why, "encoding the texts again"))

    def ensure(self, vlm: VLM, wnids: Sequence[str]) -> List[str]:
        """Encode the texts of ``wnids`` not stored (or stored with another text); returns them."""
        texts = {w: self.text(self.wordnet, w) for w in dict.fromkeys(wnids)}

        def missing():
            return [w for w, t in texts.items() if w not in self.rows or self.rows[w][1] != t]

        if not missing():
            return []
        if self.base is None:
            return self._encode(vlm, texts, missing())
        npy, js = self.paths
        with entry_lock(npy):
            remove_stale_temps(npy)
            remove_stale_temps(js)
            self._read()                                 # what another writer may have added
            todo = self._encode(vlm, texts, missing())
            # compact: a re-encoded text leaves its old row behind; the files hold row i for entry i
            order = sorted(self.rows.items(), key=lambda kv: kv[1][0])
            self.emb = self.emb[[i for _, (i, _) in order]]
            self.rows = {w: (j, t) for j, (w, (_, t)) in enumerate(order)}
            save_entry(npy, self.emb, self.made_from)
            save_json_entry(js, [[w, t] for w, (_, t) in order], self._index_made_from(read_record(npy)["sha256"]))
        return todo

    def _encode(self, vlm: VLM, texts: Dict[str, str], missing: List[str]) -> List[str]:
        if missing:
            new = vlm.encode_texts([texts[w] for w in missing])
            start = 0 if self.emb is None else self.emb.shape[0]
            self.emb = new if self.emb is None else np.concatenate([self.emb, new], axis=0)
            self.rows.update({w: (start + i, texts[w]) for i, w in enumerate(missing)})
        return missing

    def get(self, vlm: VLM, wnids: Sequence[str]) -> np.ndarray:
        """(len(wnids), E) unit rows (encoding what is missing)."""
        wnids = list(wnids)
        if not wnids:
            raise ValueError("no nodes requested")
        self.ensure(vlm, wnids)
        return l2_normalise(self.emb[[self.rows[w][0] for w in wnids]])


def definition_counts(vlm: VLM, graph: SemanticGraph, selected: Sequence[str], store: ImageFeatureCache,
                      text_embeddings: np.ndarray, *, block: int = BLOCK_ROWS) -> np.ndarray:
    """(3, |V_S|) counts ``[TP, FP, P]`` of one model on the selected nodes V_S (``selected``).

    Every image of every graph node is classified among V_S,
    ``yhat(x) = argmax_{v in V_S} cos(f(x), t_v)`` (``text_embeddings`` (|V_S|, E) of V_S's node
    texts), blockwise over the images (never the full image x node matrix). Over the (node u,
    image x) memberships: ``TP_v = #{x in X_v: yhat = v}``, ``FP_v = #{(u, x): u != v, x in X_u,
    yhat = v}``, ``P_v = |X_v|``. Image features must be in ``store`` (see :meth:`ImageFeatureCache.ensure`)."""
    selected = list(selected)
    col = {w: j for j, w in enumerate(selected)}
    if len(col) != len(selected) or not selected:
        raise ValueError("selected nodes must be a non-empty list without repeats")
    t = np.asarray(text_embeddings, dtype=np.float32)
    if t.shape[0] != len(selected):
        raise ValueError(f"{t.shape[0]} text embeddings for {len(selected)} selected nodes")
    refs, node_index, ref_index = graph.memberships()
    if not refs:
        raise ValueError(f"graph {graph.name!r} has no sample images")
    rows = store.rows(refs)                                  # feature rows of the unique images
    order = np.argsort(rows, kind="stable")                  # read the features in row order
    pred = np.empty(len(refs), dtype=np.int64)
    sorted_rows = rows[order]
    for s in range(0, len(refs), block):
        emb = vlm.embed_image_features(np.asarray(store.features[sorted_rows[s:s + block]]))
        pred[order[s:s + block]] = np.argmax(emb @ t.T, axis=1)
    node_col = np.full(len(graph.nodes), -1, dtype=np.int64)
    position = {w: i for i, w in enumerate(graph.nodes)}
    missing = [w for w in selected if w not in position]
    if missing:
        raise KeyError(f"nodes {missing[:5]} are not in graph {graph.name!r}")
    node_col[[position[w] for w in selected]] = np.arange(len(selected))
    member_node = node_col[node_index]
    member_pred = pred[ref_index]
    own = member_node == member_pred
    n = len(selected)
    tp = np.bincount(member_pred[own], minlength=n)
    fp = np.bincount(member_pred[~own], minlength=n)
    p = np.bincount(member_node[member_node >= 0], minlength=n)
    return np.stack([tp, fp, p]).astype(np.float64)


def label_nodes(vlm: VLM, graph: SemanticGraph, wnids: Sequence[str], protocol: LabelingProtocol = LabelingProtocol(),
                *, cache_dir: Optional[str | os.PathLike] = None, progress: bool = False,
                store: Optional[ImageFeatureCache] = None) -> np.ndarray:
    """Candidate protocol, Eq. 3 for each node of ``wnids``: (len(wnids),) float64 zero-shot
    accuracies a_m(v). Images encoded once (first stage cached, see :func:`graph_image_embeddings`);
    the candidate concepts' prompts embedded once."""
    wnids = list(wnids)
    if not wnids:
        return np.zeros(0)
    refs = sorted({r for w in wnids for r in graph.images_of(w)})
    if not refs:
        raise ValueError("the nodes to label have no sample images")
    row = {r: i for i, r in enumerate(refs)}
    emb = graph_image_embeddings(vlm, graph, refs, cache_dir, progress=progress, store=store)
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

    ``add_model`` computes the new model's entries (definitions: its image features of the graph
    images and its node-text embeddings; candidates: its label on every node), only those missing
    from the caches; ``add_sources`` grows the graph and computes only the new nodes' entries, for
    every model. :meth:`node_counts` gives ``[TP, FP, P]`` on a task's selected nodes.
    ``label_dir`` holds labels / node-text embeddings, ``cache_dir`` the image features (``None``:
    in memory only)."""

    def __init__(self, graph: SemanticGraph, *, protocol=None, label_dir: Optional[str | os.PathLike] = None,
                 cache_dir: Optional[str | os.PathLike] = None, progress: bool = False):
        self.graph = graph
        self.protocol = DefinitionProtocol() if protocol is None else protocol
        if getattr(self.protocol, "kind", None) not in LABELING_PROTOCOLS:
            raise TypeError(f"protocol must be one of {sorted(LABELING_PROTOCOLS)}'s classes, got {protocol!r}")
        self.label_dir = None if label_dir is None else Path(label_dir)
        self.cache_dir = cache_dir
        self.progress = progress
        self.models: Dict[str, VLM] = {}
        self._labels: Dict[str, Dict[str, float]] = {}
        self._stores: Dict[str, ImageFeatureCache] = {}
        self._texts: Dict[str, NodeTextCache] = {}

    @property
    def kind(self) -> str:
        return self.protocol.kind

    # -- storage --------------------------------------------------------------------------------
    def store(self, model: str) -> ImageFeatureCache:
        key = self.models[model].image_feature_key
        if key not in self._stores:
            self._stores[key] = ImageFeatureCache(self.graph, key, self.cache_dir,
                                                  stage=self.models[model].image_stage_record())
        return self._stores[key]

    def label_path(self, model: str) -> Optional[Path]:
        if self.label_dir is None or self.kind != "candidates":
            return None
        return self.label_dir / "mll" / "labels" / self.graph.name / self.protocol.key / f"{model}.json"

    def _label_made_from(self, model: str) -> dict:
        vlm = self.models[model]
        return {"model": model, "graph": self.graph.name, "protocol": self.protocol.key,
                "image_stage": vlm.image_stage_record(), "text_stage": vlm.text_stage_record()}

    def _load(self, model: str, *, quiet: bool = False) -> Dict[str, float]:
        """The stored labels of ``model``, when its record says they were made by this model (image
        and text stages), graph and protocol; else none (with a note unless ``quiet``: they are
        recomputed)."""
        path = self.label_path(model)
        if path is None or not path.is_file():
            return {}
        check = check_entry(path, self._label_made_from(model))
        if not check.valid:
            if not quiet:
                print(stale_note("model labels", path, check.reason, "labeling again"))
            return {}
        return {w: float(a) for w, a in load_json(path)["labels"].items()}

    def _save(self, model: str) -> None:
        """Write the labels of ``model``, merged under :func:`data.cache.entry_lock` with what another
        run sharing ``label_dir`` stored meanwhile (the record vouches for the same model, graph and
        protocol, so the union is what either would have computed)."""
        path = self.label_path(model)
        if path is None:
            return
        with entry_lock(path):
            self._labels[model] = {**self._load(model, quiet=True), **self._labels[model]}
            save_json_entry(path, {"model": model, "graph": self.graph.name, "protocol": self.protocol.key,
                                   "labels": self._labels[model]}, self._label_made_from(model))

    def texts(self, model: str) -> NodeTextCache:
        if model not in self._texts:
            self._texts[model] = NodeTextCache(model, self.graph.wordnet, text=self.protocol.text,
                                               tag=self.protocol.key, cache_dir=self.label_dir,
                                               stage=self.models[model].text_stage_record())
        return self._texts[model]

    def _label_missing(self, model: str) -> List[str]:
        """Compute what ``model`` lacks on the current graph; returns the nodes computed now."""
        vlm = self.models[model]
        if self.kind == "definitions":
            refs = self.graph.memberships()[0]
            if refs:
                self.store(model).ensure(vlm, refs, progress=self.progress)
            return self.texts(model).ensure(vlm, self.graph.nodes) if self.graph.nodes else []
        todo = [w for w in self.graph.nodes if w not in self._labels[model]]
        if todo:
            acc = label_nodes(vlm, self.graph, todo, self.protocol, cache_dir=self.cache_dir,
                              progress=self.progress, store=self.store(model))
            self._labels[model].update({w: float(a) for w, a in zip(todo, acc)})
            self._save(model)
        return todo

    # -- growth ---------------------------------------------------------------------------------
    def add_model(self, vlm: VLM) -> List[str]:
        """Submission stage: compute ``vlm``'s entries on the graph (cached ones are reused).
        Returns the nodes whose entries were not in memory before (labels / node texts)."""
        if vlm.name in self.models:
            raise ValueError(f"model {vlm.name!r} is already in the hub")
        self.models[vlm.name] = vlm
        self._labels[vlm.name] = self._load(vlm.name)
        return self._label_missing(vlm.name)

    def add_sources(self, sources: Sequence[SampleSource], *, expand: bool = True) -> List[str]:
        """Grow the graph with sample sources; compute only the new nodes' entries, for every
        model. Returns the new nodes."""
        new = self.graph.add_sources(sources, expand=expand)
        for model in self.models:
            self._label_missing(model)
        return new

    # -- views ----------------------------------------------------------------------------------
    @property
    def model_names(self) -> List[str]:
        return list(self.models)

    def _check_model(self, model: str) -> None:
        if model not in self.models:
            raise KeyError(f"model {model!r} is not in the hub; models: {self.model_names}")

    def label(self, model: str) -> Dict[str, float]:
        """Candidate protocol: the label {wnid: a_m(v)} of ``model`` (a copy)."""
        self._check_model(model)
        if self.kind != "candidates":
            raise ValueError("label() is the candidate protocol's accuracy label; with the definition "
                             "protocol use node_counts() on a task's selected nodes")
        return dict(self._labels[model])

    def label_matrix(self, models: Optional[Sequence[str]] = None, nodes: Optional[Sequence[str]] = None) -> np.ndarray:
        """Candidate protocol: (M, V) matrix L[m, v] = a_m(v) (given or the hub's order)."""
        models = self.model_names if models is None else list(models)
        nodes = self.graph.nodes if nodes is None else list(nodes)
        out = np.empty((len(models), len(nodes)))
        for i, m in enumerate(models):
            lab = self.label(m)
            missing = [w for w in nodes if w not in lab]
            if missing:
                raise KeyError(f"model {m!r} has no label on nodes {missing[:5]}")
            out[i] = [lab[w] for w in nodes]
        return out

    def node_counts(self, selected: Sequence[str], models: Optional[Sequence[str]] = None) -> np.ndarray:
        """(M, 3, |V_S|) ``[TP, FP, P]`` per model on the selected nodes (see the module docstring;
        candidate protocol: ``TP = a_m(v) |X_v|``, ``FP = 0``)."""
        models = self.model_names if models is None else list(models)
        selected = list(selected)
        unknown = [w for w in selected if w not in self.graph]
        if unknown:
            raise KeyError(f"nodes {unknown[:5]} are not in graph {self.graph.name!r}")
        sizes = np.asarray([len(self.graph.images_of(w)) for w in selected], dtype=np.float64)
        out = np.empty((len(models), 3, len(selected)))
        for i, m in enumerate(models):
            self._check_model(m)
            if self.kind == "candidates":
                acc = self.label_matrix([m], selected)[0]
                out[i] = np.stack([acc * sizes, np.zeros_like(sizes), sizes])
            else:
                out[i] = definition_counts(self.models[m], self.graph, selected, self.store(m),
                                           self.texts(m).get(self.models[m], selected))
        return out
