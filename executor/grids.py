"""The project's grids as units of work for an :class:`executor.Executor`.

* :class:`ExtractUnit`, the pairs of one dataset and one network family (a network and its
  intermediate layers: one forward pass serves them; other models: one pair) of the feature cache,
  and :func:`extract_grid` (``forward_feature_*.py --executor ray``): the unit runs the serial
  :func:`models.pipeline.extract_to_cache` on its pairs, so it writes the same files, and skips
  pairs whose entries are valid.
* :class:`OfflineHubUnit`, the models of the offline MLL hub that share one first image stage
  (``image_feature_key``), and :func:`label_offline_hub` (``mll_benchmark.py --executor ray``): the
  unit rebuilds the benchmark's graph (:func:`mll.benchmark.offline_hub`), adds its models (image
  features of the graph images, node-text embeddings / labels) and encodes the target images, all
  into the caches the serial benchmark then reads. Grouping by feature key makes every cache file
  the work of exactly one task (the models of a group share their image-feature files).
* :class:`GraphShardUnit`, the first image stage of one feature group on one shard of the graph's
  nodes (``label_offline_hub(..., node_shards=S)``): the expensive part of labeling (every graph
  image through the image tower; about 680k images per model at the paper's scale) as (model, node
  shard) tasks, run before the per-group units, which then only classify cached embeddings. Shards
  add their rows to the group's feature file under its lock (read, merge, write), so the file's row
  order follows the shards' finishing order; every consumer looks rows up by image, so the labels
  do not depend on it (tested against the serial path).

Units are frozen dataclasses of plain values (picklable, cheap to ship: a few hundred bytes); the
arrays never travel through Ray, they go to the shared cache directory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .base import Executor, Resources, run_unit

__all__ = ["ExtractUnit", "extract_grid", "OfflineHubUnit", "GraphShardUnit", "label_offline_hub"]


def _path(p) -> Optional[str]:
    return None if p is None else os.fspath(p)


# -- features of (model, dataset) pairs ---------------------------------------------------------
@dataclass(frozen=True)
class ExtractUnit:
    """The (m, ``dataset``) pairs of :func:`models.pipeline.extract_to_cache` (same arguments) for
    ``model`` and its ``siblings``: candidates of the same network family (a network and its
    intermediate layers, :mod:`models.intermediate`), which one forward pass serves."""

    model: str
    dataset: str
    cache_dir: str
    split: str = "train"
    data_root: Optional[str] = None
    weights_dir: Optional[str] = None
    n_per_class: Optional[int] = None
    random_state: int = 0
    batch_size: int = 64
    num_workers: int = 0
    device: Optional[str] = None
    resources: Resources = field(default=Resources(), compare=False)
    siblings: Tuple[str, ...] = ()

    @property
    def models(self) -> Tuple[str, ...]:
        return (self.model, *self.siblings)

    def run(self) -> list:
        """:func:`models.pipeline.extract_to_cache` of the unit's pairs -> their PairResults (in
        ``models`` order); valid pairs are skipped, a family whose pairs are all valid is not built."""
        from models.pipeline import extract_to_cache
        return extract_to_cache(list(self.models), [self.dataset], cache_dir=self.cache_dir, split=self.split,
                                data_root=self.data_root, weights_dir=self.weights_dir, n_per_class=self.n_per_class,
                                random_state=self.random_state, batch_size=self.batch_size,
                                num_workers=self.num_workers, device=self.device, progress=False)


def extract_grid(model_names: Sequence[str], dataset_names: Sequence[str], *, executor: Executor,
                 cache_dir: str | os.PathLike, split: str = "train", data_root=None, weights_dir=None,
                 n_per_class: Optional[int] = None, random_state: int = 0, batch_size: int = 64,
                 num_workers: int = 0, device: Optional[str] = None, resources: Resources = Resources(),
                 progress: bool = True) -> list:
    """Every (model, dataset) pair on ``executor``: one :class:`ExtractUnit` (``resources`` each) per
    dataset and network family among the names (:func:`models.pipeline.family_units`: a network's
    candidates share one forward pass, as in the serial path), one per pair for the other models.
    PairResults in model-major order, as :func:`extract_to_cache` returns them. Unknown model names
    fail before any work."""
    from models.pipeline import family_units
    from models.registry import model_info
    if not model_names or not dataset_names:
        raise ValueError("give at least one model and one dataset")
    for name in model_names:
        model_info(name)
    units = [ExtractUnit(names[0], d, _path(cache_dir), split, _path(data_root), _path(weights_dir), n_per_class,
                         random_state, batch_size, num_workers, device, resources, tuple(names[1:]))
             for _, names in family_units(model_names) for d in dataset_names]
    done = executor.map(run_unit, units, desc="extraction units (network family x dataset)", progress=progress)
    by_pair = {(r.model, r.dataset): r for results in done for r in results}
    return [by_pair[(m, d)] for m in dict.fromkeys(model_names) for d in dataset_names]


# -- the offline MLL hub -----------------------------------------------------------------------
@dataclass(frozen=True)
class OfflineHubUnit:
    """The hub models ``models`` (one ``image_feature_key``) of the offline benchmark whose hub is
    ``offline_hub(**hub_args)``; also their image features of the ``targets`` test subsets."""

    models: Tuple[str, ...]
    hub_args: Tuple[Tuple[str, Any], ...]
    targets: Tuple[str, ...] = ()
    per_class: int = 15
    image_size: Optional[int] = 128
    resources: Resources = field(default=Resources(), compare=False)

    def run(self) -> Dict[str, Any]:
        """Add the models to a freshly rebuilt hub (cached entries are reused, missing ones
        computed and written), score them on the graph (INB) and encode the target images."""
        from mll.benchmark import graph_zero_shot_accuracy, offline_hub
        from mll.tasks import offline_target
        from mll.vlm import cached_image_embeddings, create_vlm
        args = dict(self.hub_args)
        cache_dir, random_state = args["cache_dir"], args["random_state"]
        _, graph, hub = offline_hub(**args)
        tasks = [offline_target(t, per_class=self.per_class, random_state=random_state) for t in self.targets]
        computed = {}
        for name in self.models:
            vlm = create_vlm(name, image_size=self.image_size, cache_dir=cache_dir)
            computed[name] = len(hub.add_model(vlm))
            graph_zero_shot_accuracy(vlm, graph, cache_dir=cache_dir)
            for task in tasks:
                cached_image_embeddings(vlm, task.key, task.images, cache_dir, images_record=task.record)
        return {"models": list(self.models), "entries_computed": computed}


@dataclass(frozen=True)
class GraphShardUnit:
    """Graph images of the nodes ``graph.nodes[shard::n_shards]`` through ``model``'s first image
    stage (shared by its ``image_feature_key`` group), into the group's feature cache."""

    model: str
    hub_args: Tuple[Tuple[str, Any], ...]
    shard: int
    n_shards: int
    image_size: Optional[int] = 128
    resources: Resources = field(default=Resources(), compare=False)

    def run(self) -> Dict[str, Any]:
        from mll.benchmark import offline_hub
        from mll.labeling import ImageFeatureCache
        from mll.vlm import create_vlm
        args = dict(self.hub_args)
        _, graph, _ = offline_hub(**args)
        vlm = create_vlm(self.model, image_size=self.image_size, cache_dir=args["cache_dir"])
        nodes = graph.nodes[self.shard::self.n_shards]
        refs = list(dict.fromkeys(r for n in nodes for r in graph.images_of(n)))
        store = ImageFeatureCache(graph, vlm.image_feature_key, args["cache_dir"], stage=vlm.image_stage_record())
        encoded = store.ensure(vlm, refs) if refs else 0
        return {"model": self.model, "shard": self.shard, "nodes": len(nodes), "images_encoded": encoded}


def label_offline_hub(executor: Executor, *, sources: Sequence[str], targets: Sequence[str] = (),
                      models: Optional[Sequence[str]] = None, images_per_node: int = 10,
                      images_per_source: Optional[int] = None, per_class: int = 15,
                      image_size: Optional[int] = 128, variant: str = "released", config=None,
                      n_distractors: Optional[int] = None, k_nodes: Optional[int] = None,
                      alpha: Optional[float] = None, cache_dir, random_state: int = 0, node_shards: int = 1,
                      resources: Resources = Resources(), progress: bool = True) -> List[Dict[str, Any]]:
    """Fill ``cache_dir`` with everything :func:`mll.benchmark.build_offline_benchmark` (same
    arguments) computes per model, one :class:`OfflineHubUnit` per image-feature key (models in
    the hub's order within a group). Returns each unit's summary. The benchmark built afterwards
    on the same ``cache_dir`` only reads these caches. ``node_shards`` > 1 first encodes the graph
    images as one :class:`GraphShardUnit` per (feature group, node shard)."""
    from mll.vlm import create_vlm, list_vlms
    if cache_dir is None:
        raise ValueError("label_offline_hub writes its results to the cache: give a cache_dir")
    if isinstance(node_shards, bool) or not isinstance(node_shards, int) or node_shards < 1:
        raise ValueError(f"node_shards must be a positive int, got {node_shards!r}")
    models = list_vlms("offline") if models is None else list(models)
    if not models:
        raise ValueError("no hub models given")
    groups: Dict[str, List[str]] = {}
    for name in models:       # construction is lazy (no weights read): only the feature key is needed
        groups.setdefault(create_vlm(name, image_size=image_size).image_feature_key, []).append(name)
    hub_args = (("sources", tuple(sources)), ("images_per_node", images_per_node),
                ("images_per_source", images_per_source), ("variant", variant), ("config", config),
                ("n_distractors", n_distractors), ("k_nodes", k_nodes), ("alpha", alpha),
                ("cache_dir", _path(cache_dir)), ("random_state", random_state))
    if node_shards > 1:
        shards = [GraphShardUnit(names[0], hub_args, i, node_shards, image_size, resources)
                  for names in groups.values() for i in range(node_shards)]
        executor.map(run_unit, shards, desc="(feature group, node shard) pairs", progress=progress)
    units = [OfflineHubUnit(tuple(names), hub_args, tuple(targets), per_class, image_size, resources)
             for names in groups.values()]
    return executor.map(run_unit, units, desc="hub model groups", progress=progress)
