"""The full offline benchmark's library (evaluation.offline_benchmark) on real small networks."""
import json

import numpy as np
import pytest

from evaluation.offline_benchmark import benchmark_cells, protocol_of, run_offline_benchmark
from finetuning import FinetuneConfig

SMALL = ["fmnist_resnet_e1", "fmnist_vgg_e5", "shapes_resnet_e8"]   # networks pre-trained here (28-32 px)


def test_cells_respect_the_disjointness_rule_and_the_table():
    cells = benchmark_cells(SMALL + ["mnist_mlp_e20"], ["textures", "mnist"])
    assert "mnist_mlp_e20" not in cells["mnist"] and "mnist_mlp_e20" in cells["textures"]
    truth = {"textures": {"fmnist_vgg_e5": 1.0, "shapes_resnet_e8": 2.0}, "mnist": {}}
    assert benchmark_cells(SMALL, ["textures"], truth) == {"textures": ["fmnist_vgg_e5", "shapes_resnet_e8"]}
    with pytest.raises(ValueError, match="'mnist'.*at least 2"):
        benchmark_cells(SMALL, ["mnist"], truth)


def test_protocol_comes_from_the_table_or_its_partial_file(tmp_path):
    cfg = FinetuneConfig(n_train_per_class=7, n_val_per_class=2, n_test_per_class=3)
    (tmp_path / "nogroup_xyz.partial.json").write_text(json.dumps({"protocol": cfg.to_dict(), "runs": []}))
    assert protocol_of("nogroup_xyz", tmp_path) == cfg
    with pytest.raises(FileNotFoundError, match="finetune.py"):
        protocol_of("another_missing_group", tmp_path)
    from data.ground_truth import register_ground_truth_file
    table = tmp_path / "proto_table_xyz.json"
    table.write_text(json.dumps({"about": "t", "proto_table_xyz": {"d": {"a": 1.0, "b": 2.0}},
                                 "protocol": {"description": "as finetuning.table writes it", **cfg.to_dict()}}))
    register_ground_truth_file(table)
    assert protocol_of("proto_table_xyz", tmp_path / "elsewhere") == cfg


def test_end_to_end_on_textures(tmp_path):
    cfg = FinetuneConfig(n_train_per_class=12, n_val_per_class=2, n_test_per_class=3)
    truth = {"textures": {"fmnist_resnet_e1": 40.0, "fmnist_vgg_e5": 70.0, "shapes_resnet_e8": 60.0}}
    seeds = {"textures": {"fmnist_vgg_e5": [69.0, 71.0]}}
    result, boot = run_offline_benchmark(SMALL, ["textures"], config=cfg, cache_dir=tmp_path / "c",
                                         results_dir=tmp_path / "r", encoders=["minilm"],
                                         metrics=["emms", "logme", "leep"], ground_truth=truth,
                                         group="t", seeds=seeds, n_boot=20, progress=False, log=lambda s: None)
    r = result.datasets["textures"]
    assert sorted(r.models) == sorted(SMALL) and set(r.metrics) == {"emms", "logme", "leep"}
    assert all(np.isfinite(v) for s in r.scores.values() for v in s.values())
    feats = np.load(tmp_path / "c" / "features" / "textures" / "fmnist_vgg_e5.npy")
    assert feats.shape[0] == 36                   # the protocol's 12 training images x 3 classes
    assert boot.seed_noise and set(boot.metrics) == {"emms", "logme", "leep"}
    again, _ = run_offline_benchmark(SMALL, ["textures"], config=cfg, cache_dir=tmp_path / "c",
                                     results_dir=tmp_path / "r", encoders=["minilm"],
                                     metrics=["emms", "logme", "leep"], ground_truth=truth, group="t",
                                     n_boot=20, progress=False, log=lambda s: None)
    assert again.computed == 0 and again.reused == 9
