"""The Ray executor on a real local runtime (2 CPUs): the same bytes as the serial paths (offline
zoo features, an offline MLL hub's image features and node-text embeddings), and a worker killed
mid-write leaves no partial file and the rerun completes. One runtime for the module."""
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import ray  # noqa: E402  (a pinned dependency: a missing ray must fail, not skip)

from executor import RayExecutor, RayStartError, Resources, UnitFailedError, run_unit  # noqa: E402
from executor.grids import ExtractUnit, extract_grid, label_offline_hub  # noqa: E402

MODELS, DATASETS = ["ocr_cls", "ocr_cls@stage3", "efficientnet_lite0"], ["textures", "easyvqa_shapes"]
GRID = dict(n_per_class=3, batch_size=4, progress=False)


@pytest.fixture(scope="module")
def ex():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # units defined here reach the workers
    executor = RayExecutor(num_cpus=2, object_store_memory=100 * 1024 ** 2)
    yield executor
    executor.close()
    assert not ray.is_initialized()


def files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and not p.name.endswith(".lock")}


@pytest.fixture(scope="module")
def serial_zoo(tmp_path_factory):
    from models.pipeline import extract_to_cache
    root = tmp_path_factory.mktemp("serial_zoo")
    torch.set_num_threads(1)                 # what every Ray task with num_cpus=1 uses
    extract_to_cache(MODELS, DATASETS, cache_dir=root, **GRID)
    return root


def test_zoo_features_through_ray_are_byte_identical(ex, serial_zoo, tmp_path):
    res = extract_grid(MODELS, DATASETS, executor=ex, cache_dir=tmp_path, **GRID)
    assert [(r.model, r.dataset, r.status) for r in res] == [(m, d, "extracted") for m in MODELS for d in DATASETS]
    want, got = files(serial_zoo), files(tmp_path)
    assert sorted(got) == sorted(want) and any(k.startswith("features/") for k in got)
    assert [k for k in want if got[k] != want[k]] == []
    # a finished unit is never redone
    assert {r.status for r in extract_grid(MODELS, DATASETS, executor=ex, cache_dir=tmp_path, **GRID)} == {"skipped"}


@dataclass(frozen=True)
class DyingExtractUnit(ExtractUnit):
    """On its first attempt (no marker file) the worker dies in the middle of writing a cache file."""

    marker: str = ""

    def run(self):
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            import data.cache

            def die(writer, chunk):                 # write half of the first chunk, then vanish
                writer.fh.write(bytes(chunk)[: max(1, len(chunk) // 2)])
                writer.fh.flush()
                os._exit(1)

            data.cache._HashingWriter.write = die
        return super().run()


def test_killed_worker_leaves_no_partial_file_and_rerun_completes(ex, serial_zoo, tmp_path):
    cache, marker = tmp_path / "cache", tmp_path / "died"
    unit = DyingExtractUnit("ocr_cls", "textures", str(cache), n_per_class=3, batch_size=4, marker=str(marker))
    no_retry = RayExecutor(max_retries=0)            # joins the module's runtime
    with pytest.raises(UnitFailedError, match="1 of 1 .*failed.*DyingExtractUnit"):
        no_retry.map(run_unit, [unit], progress=False)
    assert marker.exists()
    left = [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert left and all(p.name.endswith(".tmp") for p in left)          # killed mid-write: only a temp file
    assert not (cache / "features" / "textures" / "ocr_cls.npy").exists()
    [[result]] = no_retry.map(run_unit, [unit], progress=False)          # the rerun
    assert result.status == "extracted"
    assert not [p for p in cache.rglob("*.tmp")]
    for rel in ("features/textures/ocr_cls.npy", "source_probs/textures/ocr_cls.npy", "labels/textures.npy"):
        assert (cache / rel).read_bytes() == (serial_zoo / rel).read_bytes()


def test_ray_retries_a_dead_worker_within_one_map(ex, tmp_path):
    unit = DyingExtractUnit("ocr_cls", "textures", str(tmp_path / "c"), n_per_class=3, batch_size=4,
                            marker=str(tmp_path / "died"))
    [[result]] = RayExecutor(max_retries=1).map(run_unit, [unit], progress=False)
    assert result.status == "extracted" and not list((tmp_path / "c").rglob("*.tmp"))


def test_unit_errors_name_the_unit_after_the_others_finish(ex, tmp_path):
    units = [ExtractUnit("ocr_cls", "no_such_dataset", str(tmp_path)), ExtractUnit("ocr_cls", "textures", str(tmp_path),
                                                                                   n_per_class=2, batch_size=4)]
    with pytest.raises(UnitFailedError, match="1 of 2 .*no_such_dataset"):
        ex.map(run_unit, units, resources=Resources(num_cpus=1), progress=False)
    assert (tmp_path / "features" / "textures" / "ocr_cls.npy").is_file()      # the other unit finished


def test_unreachable_cluster_is_a_clear_error_not_a_hang():
    import socket
    with socket.socket() as sock:             # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(RayStartError, match="no Ray cluster reachable at"):
            RayExecutor(address=address, connect_timeout_s=2)


HUB = dict(sources=("textures",), images_per_node=2, image_size=None, random_state=0)
HUB_MODELS = ["conse-lite0-names", "conse-lite1-names"]


def test_offline_hub_labels_through_ray_are_byte_identical(ex, tmp_path):
    from mll.benchmark import offline_hub
    from mll.vlm import create_vlm
    import mll.vlm
    serial, distributed = tmp_path / "serial", tmp_path / "ray"
    torch.set_num_threads(1)
    # the process-wide text memo holds what earlier tests encoded in other batches (other padding,
    # other rounding); the Ray workers start empty, so the serial run must too
    mll.vlm._TEXT_MEMOS.clear()
    _, _, hub = offline_hub(cache_dir=serial, sources=HUB["sources"], images_per_node=2, random_state=0)
    for name in HUB_MODELS:                                  # the serial path of build_offline_benchmark
        hub.add_model(create_vlm(name, image_size=None, cache_dir=serial))
    if (serial / "mll" / "text").is_dir():            # ImageNet class texts: inputs, not compared
        shutil.copytree(serial / "mll" / "text", distributed / "mll" / "text")
    out = label_offline_hub(ex, models=HUB_MODELS, cache_dir=distributed, progress=False, **HUB)
    assert [o["models"] for o in out] == [[m] for m in HUB_MODELS]
    want = {k: v for k, v in files(serial).items() if not k.startswith("mll/text")}
    got = {k: v for k, v in files(distributed).items() if k in want or k.startswith(("mll/image_features/graph",
                                                                                      "mll/node_text"))}
    assert sorted(got) == sorted(want) and any("node_text" in k for k in want) and any("graph-" in k for k in want)
    assert [k for k in want if got[k] != want[k]] == []


def test_finetune_cells_through_ray_match_the_serial_loop(ex, tmp_path):
    import test_finetune as tf                     # its synthetic task and tiny CNN "zoo"
    from finetuning import FinetuneConfig, run_benchmark
    ray.cloudpickle.register_pickle_by_value(tf)
    cfg = FinetuneConfig(lrs=(1e-2,), **tf.FAST)
    kw = dict(model_factory=tf.CountingFactory(), dataset_getter=tf.colour_getter, progress=False)
    serial = run_benchmark(["tiny_a", "tiny_b"], ["colours"], cfg, tmp_path / "s.json", tmp_path / "s.partial.json", **kw)
    table = run_benchmark(["tiny_a", "tiny_b"], ["colours"], cfg, tmp_path / "r.json", tmp_path / "r.partial.json",
                          executor=ex, resources=Resources(num_cpus=1), **kw)
    strip = lambda t: {m: {k: v for k, v in r.items() if k not in ("seconds", "per_lr", "seed_runs")}  # noqa: E731
                       for m, r in t["runs"]["colours"].items()}
    assert table["offline_zoo"] == serial["offline_zoo"] and strip(table) == strip(serial)
    factory = tf.CountingFactory()                 # a rerun finds every cell done: nothing trains
    assert run_benchmark(["tiny_a", "tiny_b"], ["colours"], cfg, tmp_path / "r.json", tmp_path / "r.partial.json",
                         executor=ex, model_factory=factory, dataset_getter=tf.colour_getter,
                         progress=False)["offline_zoo"] == serial["offline_zoo"]
    assert factory.calls == []


def _graph_rows(cache_dir, names):
    """Per model: its graph-image embeddings looked up by image (row order of the file ignored)."""
    from mll.benchmark import offline_hub
    from mll.labeling import ImageFeatureCache
    from mll.vlm import create_vlm
    _, graph, _ = offline_hub(cache_dir=cache_dir, sources=HUB["sources"], images_per_node=2, random_state=0)
    out = {}
    for name in names:
        vlm = create_vlm(name, image_size=None, cache_dir=cache_dir)
        store = ImageFeatureCache(graph, vlm.image_feature_key, cache_dir, stage=vlm.image_stage_record())
        refs = sorted({r for n in graph.nodes for r in graph.images_of(n)})
        store._load()
        out[name] = np.asarray(store.features)[store.rows(refs)]
    return out


@pytest.mark.parametrize("executor_kind", ["serial", "ray"])
def test_node_shards_give_the_serial_embeddings_and_labels(executor_kind, ex, tmp_path):
    from executor.base import SerialExecutor
    torch.set_num_threads(1)
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    runner = SerialExecutor() if executor_kind == "serial" else ex
    label_offline_hub(SerialExecutor(), models=HUB_MODELS, cache_dir=whole, progress=False, **HUB)
    out = label_offline_hub(runner, models=HUB_MODELS, cache_dir=sharded, node_shards=3, progress=False, **HUB)
    assert all(sum(o["entries_computed"].values()) >= 0 for o in out)
    a, b = _graph_rows(whole, HUB_MODELS), _graph_rows(sharded, HUB_MODELS)
    for name in HUB_MODELS:
        np.testing.assert_array_equal(a[name], b[name])
    same = {k: v for k, v in files(whole).items() if k.startswith("mll/node_text")}
    assert same and all(files(sharded)[k] == v for k, v in same.items())
    with pytest.raises(ValueError, match="node_shards"):
        label_offline_hub(runner, models=HUB_MODELS, cache_dir=sharded, node_shards=0, progress=False, **HUB)
