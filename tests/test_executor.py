"""executor/: the serial executor, resources, the --executor options, grids' units (no Ray needed)."""
import argparse
import pickle

import pytest

from executor import EXECUTORS, Resources, SerialExecutor, create_executor, run_unit, unit_resources
from executor.cli import add_executor_arguments, executor_from_args, executor_resources
from executor.grids import ExtractUnit, OfflineHubUnit, extract_grid, label_offline_hub


class Double:
    def __init__(self, x):
        self.x = x

    def run(self):
        return 2 * self.x


def test_registry_and_serial_map_in_order():
    assert {"serial", "ray"} <= set(EXECUTORS)
    with create_executor("serial") as ex:
        assert ex.map(run_unit, [Double(i) for i in range(5)], progress=False) == [0, 2, 4, 6, 8]
        assert ex.map(run_unit, [], progress=False) == []
    with pytest.raises(KeyError, match="unknown executor 'dask'"):
        create_executor("dask")


def test_serial_fails_fast_with_the_units_error():
    seen = []

    def fn(x):
        seen.append(x)
        if x == 1:
            raise ValueError("unit 1 broke")
        return x

    with pytest.raises(ValueError, match="unit 1 broke"):
        SerialExecutor().map(fn, [0, 1, 2], progress=False)
    assert seen == [0, 1]


def test_resources_validate_and_default():
    with pytest.raises(ValueError, match="resources must be >= 0"):
        Resources(num_gpus=-1)
    with pytest.raises(ValueError, match="memory"):
        Resources(memory=0)
    unit = ExtractUnit("ocr_cls", "textures", "c", resources=Resources(num_gpus=1))
    assert unit_resources(unit).num_gpus == 1
    assert unit_resources(unit, Resources(num_cpus=2)).num_cpus == 2
    assert unit_resources(Double(1)) == Resources()


def test_executor_arguments():
    p = add_executor_arguments(argparse.ArgumentParser())
    args = p.parse_args([])
    assert args.executor == "serial" and isinstance(executor_from_args(args), SerialExecutor)
    assert executor_resources(p.parse_args(["--gpus-per-task", "0.5"])) == Resources(1.0, 0.5)
    with pytest.raises(ValueError, match="--ray-address needs --executor ray"):
        executor_from_args(p.parse_args(["--ray-address", "auto"]))
    with pytest.raises(SystemExit):
        p.parse_args(["--gpus-per-task", "-1"])


class Recording(SerialExecutor):
    """Records the units instead of running them (extraction units: as if every pair were skipped)."""

    def map(self, fn, units, **kw):
        from models.pipeline import PairResult
        self.units = list(units)
        return [[PairResult(m, u.dataset, "skipped", None, None, None) for m in u.models]
                if isinstance(u, ExtractUnit) else None for u in self.units]


def test_extract_grid_units_are_the_pairs_and_picklable(tmp_path):
    ex = Recording()
    extract_grid(["ocr_cls", "ocr_rec"], ["textures", "digits"], executor=ex, cache_dir=tmp_path, n_per_class=3,
                 resources=Resources(num_gpus=1))
    assert [(u.model, u.dataset) for u in ex.units] == [("ocr_cls", "textures"), ("ocr_cls", "digits"),
                                                        ("ocr_rec", "textures"), ("ocr_rec", "digits")]
    assert all(u.cache_dir == str(tmp_path) and u.n_per_class == 3 and u.resources.num_gpus == 1 for u in ex.units)
    assert pickle.loads(pickle.dumps(ex.units[0])) == ex.units[0]
    assert len(pickle.dumps(ex.units[0])) < 1000                 # a description, not data
    with pytest.raises(ValueError, match="unknown model"):
        extract_grid(["no_such_model"], ["textures"], executor=ex, cache_dir=tmp_path)


def test_extract_grid_serves_a_network_family_with_one_unit_per_dataset(tmp_path):
    ex = Recording()
    names = ["ocr_cls@stage3", "fmnist_vgg_e5", "ocr_cls", "ocr_det@c3"]
    res = extract_grid(names, ["textures", "digits"], executor=ex, cache_dir=tmp_path)
    assert [(u.models, u.dataset) for u in ex.units] == [
        (("ocr_cls@stage3", "ocr_cls"), "textures"), (("ocr_cls@stage3", "ocr_cls"), "digits"),
        (("fmnist_vgg_e5",), "textures"), (("fmnist_vgg_e5",), "digits"),
        (("ocr_det@c3",), "textures"), (("ocr_det@c3",), "digits")]
    assert [(r.model, r.dataset) for r in res] == [(m, d) for m in names for d in ("textures", "digits")]


def test_serial_grid_writes_what_extract_to_cache_writes(tmp_path):
    from models.pipeline import extract_to_cache
    kw = dict(n_per_class=2, batch_size=4, progress=False)
    a = extract_to_cache(["ocr_cls"], ["textures"], cache_dir=tmp_path / "a", **kw)
    b = extract_grid(["ocr_cls"], ["textures"], executor=SerialExecutor(), cache_dir=tmp_path / "b", **kw)
    assert [r.status for r in a] == [r.status for r in b] == ["extracted"]
    for rel in ("features/textures/ocr_cls.npy", "source_probs/textures/ocr_cls.npy", "labels/textures.npy"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    again = extract_grid(["ocr_cls"], ["textures"], executor=SerialExecutor(), cache_dir=tmp_path / "b", **kw)
    assert [r.status for r in again] == ["skipped"]


def test_label_offline_hub_groups_models_by_image_feature_key(tmp_path):
    ex = Recording()
    label_offline_hub(ex, sources=("textures",), targets=("textures",), cache_dir=tmp_path, image_size=64,
                      models=["conse-lite0-names", "conse-lite1-names", "conse-lite0-defs", "aligned-ocr-generalist"])
    assert [u.models for u in ex.units] == [("conse-lite0-names", "conse-lite0-defs"), ("conse-lite1-names",),
                                            ("aligned-ocr-generalist",)]
    assert all(isinstance(u, OfflineHubUnit) and dict(u.hub_args)["cache_dir"] == str(tmp_path) for u in ex.units)
    pickle.dumps(ex.units)
    with pytest.raises(ValueError, match="give a cache_dir"):
        label_offline_hub(ex, sources=("textures",), cache_dir=None)


def test_remove_stale_temps_only_touches_the_entry(tmp_path):
    from data.cache import remove_stale_temps
    (tmp_path / ".a.npy.x1.tmp").write_bytes(b"half")
    (tmp_path / ".a.npy.record.json.x2.tmp").write_bytes(b"half")
    (tmp_path / ".a.b.npy.x3.tmp").write_bytes(b"other entry")
    (tmp_path / "a.npy").write_bytes(b"kept")
    removed = remove_stale_temps(tmp_path / "a.npy")
    assert sorted(p.name for p in removed) == [".a.npy.record.json.x2.tmp", ".a.npy.x1.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.b.npy.x3.tmp", "a.npy"]
    assert remove_stale_temps(tmp_path / "missing_dir" / "a.npy") == []
