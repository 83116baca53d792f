"""The shipped fine-tuning ground truth and its loader (data.ground_truth)."""
import json
import math
from pathlib import Path

import pytest

import data.ground_truth as gt
from data.ground_truth import (ground_truth_info, list_groups, load_ground_truth, register_ground_truth_file,
                               validate_ground_truth_table)

CLS_DATASETS = {"aircraft", "caltech101", "cars", "cifar10", "cifar100", "dtd", "flowers", "food", "pets",
                "sun397", "voc2007"}
# the published reference table, when this checkout sits next to the shared reference folder
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "finetune_ground_truth.json"


@pytest.fixture(autouse=True)
def _no_leaked_registrations(monkeypatch):
    monkeypatch.setattr(gt, "_REGISTERED", {})


def test_shipped_groups_are_listed():
    assert {"cnn_group", "vit_group", "ssl_group", "caption"} <= set(list_groups())


@pytest.mark.parametrize("group,n_models", [("cnn_group", 11), ("vit_group", 13), ("ssl_group", 12)])
def test_classification_groups_cover_11_datasets(group, n_models):
    table = load_ground_truth(group)
    assert set(table) == CLS_DATASETS
    models = set(table["cars"])
    assert len(models) == n_models
    for dataset, row in table.items():
        assert set(row) == models, dataset
        assert all(0 < v <= 100 for v in row.values()), dataset  # percentages


def test_caption_group_shape():
    table = load_ground_truth("caption")
    assert set(table) == {"flickr8k", "flickr30k", "RSICD", "flickr10kH", "flickr10kR"}
    for row in table.values():
        assert len(row) == 9
        assert all(0 < v < 1 for v in row.values())  # fractions


@pytest.mark.parametrize("group,dataset,model,value", [
    ("cnn_group", "cars", "resnet50", 89.09),
    ("cnn_group", "aircraft", "mnasnet1_0", 66.48),
    ("cnn_group", "voc2007", "resnet152", 86.32),
    ("vit_group", "sun397", "deit_base", 68.62),
    ("vit_group", "cifar10", "pvt_tiny", 94.87),
    ("ssl_group", "food", "byol", 85.44),
    ("ssl_group", "caltech101", "insdis", 77.21),
    ("caption", "RSICD", "swin2vit_roberta", 0.35218),
    ("caption", "flickr10kH", "swin2vit_bart", 0.069),
])
def test_spot_values(group, dataset, model, value):
    assert load_ground_truth(group)[dataset][model] == value


@pytest.mark.skipif(not REFERENCE.is_file(), reason="shared reference table not present")
@pytest.mark.parametrize("group", ["cnn_group", "vit_group", "ssl_group", "caption"])
def test_every_value_matches_the_reference(group):
    reference = json.loads(REFERENCE.read_text())[group]
    assert load_ground_truth(group) == reference


def test_metadata_names_source_and_measures():
    info = ground_truth_info("ssl_group")
    assert "SFDA" in info["source"]
    assert info["dataset_measure"]["voc2007"] == "11-point mAP"
    assert info["dataset_measure"]["aircraft"] == "mean per-class accuracy"
    assert "EMMS" in ground_truth_info("cnn_group")["source"]
    assert Path(info["path"]).is_file()
    assert "ssl_group" not in info  # the table itself is not metadata


def test_load_returns_a_fresh_copy():
    a = load_ground_truth("cnn_group")
    a["cars"]["resnet50"] = -1.0
    assert load_ground_truth("cnn_group")["cars"]["resnet50"] == 89.09


def test_unknown_group_lists_available():
    with pytest.raises(KeyError, match="cnn_group"):
        load_ground_truth("no_such_group")


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_register_file_with_offline_zoo_schema(tmp_path):
    doc = {"about": "CPU fine-tuning", "protocol": {"epochs": 3}, "dataset_measure": {"digits": "accuracy"},
           "offline_zoo": {"digits": {"lite0": 91.5, "lite1": 93.0, "dinov2_s": 88}}}
    name = register_ground_truth_file(_write(tmp_path / "offline_zoo.json", doc))
    assert name == "offline_zoo"
    assert "offline_zoo" in list_groups()
    assert load_ground_truth("offline_zoo") == {"digits": {"lite0": 91.5, "lite1": 93.0, "dinov2_s": 88.0}}
    assert ground_truth_info("offline_zoo")["protocol"] == {"epochs": 3}


def test_register_uses_group_field_then_explicit_name(tmp_path):
    doc = {"group": "mine", "mine": {"d": {"a": 1, "b": 2}}}
    path = _write(tmp_path / "file.json", doc)
    assert register_ground_truth_file(path) == "mine"
    with pytest.raises(ValueError, match="no table under the key 'other'"):
        register_ground_truth_file(path, group="other")


@pytest.mark.parametrize("table,match", [
    ({"d": {"a": 1.0, "b": math.nan}}, "finite number"),
    ({"d": {"a": 1.0, "b": "high"}}, "finite number"),
    ({"d": {"a": 1.0}}, "at least 2"),
    ({"d": [1.0, 2.0]}, "expected \\{model: value\\}"),
    ({}, "non-empty"),
])
def test_validation_names_the_problem(table, match):
    with pytest.raises(ValueError, match=match):
        validate_ground_truth_table(table)


def test_register_rejects_invalid_file_at_once(tmp_path):
    path = _write(tmp_path / "bad.json", {"bad": {"d": {"a": 1.0, "b": True}}})
    with pytest.raises(ValueError, match="model 'b' on dataset 'd'"):
        register_ground_truth_file(path)
    assert "bad" not in list_groups()
    with pytest.raises(FileNotFoundError, match="missing.json"):
        register_ground_truth_file(tmp_path / "missing.json")


def _seeded_table(tmp_path, seeds, value):
    doc = {"about": "t", "group": "seeded", "seeded": {"d": {"a": value, "b": 50.0}},
           "runs": {"d": {"a": {"test_acc": value, "test_acc_seeds": seeds}, "b": {"test_acc": 50.0}}}}
    path = tmp_path / "seeded.json"
    path.write_text(json.dumps(doc))
    return register_ground_truth_file(path)


def test_seeds_and_runs_of_a_fine_tuning_table(tmp_path):
    from data.ground_truth import ground_truth_seeds, load_ground_truth_runs

    group = _seeded_table(tmp_path, [70.0, 72.5, 74.0], (70.0 + 72.5 + 74.0) / 3)
    assert ground_truth_seeds(group) == {"d": {"a": [70.0, 72.5, 74.0]}}   # b has one value: no seed noise
    runs = load_ground_truth_runs(group)
    assert runs["d"]["b"] == {"test_acc": 50.0}
    runs["d"]["b"]["test_acc"] = 0.0                                      # a fresh copy
    assert load_ground_truth_runs(group)["d"]["b"]["test_acc"] == 50.0
    assert ground_truth_seeds("cnn_group") == {} and load_ground_truth_runs("cnn_group") == {}


def test_seeds_must_average_to_the_table_value(tmp_path):
    from data.ground_truth import ground_truth_seeds

    group = _seeded_table(tmp_path, [70.0, 72.0], 72.0)
    with pytest.raises(ValueError, match="'a' on 'd' average 71.*72"):
        ground_truth_seeds(group)
