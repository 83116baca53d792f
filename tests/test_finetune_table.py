"""The committed fine-tuned ground truth of the offline zoo (data/ground_truth/offline_zoo.json) is
consistent: loadable by data.ground_truth, produced by the documented protocol, best-val selection."""
import json

import pytest

from data.ground_truth import GROUND_TRUTH_DIR, ground_truth_info, load_ground_truth
from finetuning import GROUP, FinetuneConfig, select_best_lr

PATH = GROUND_TRUTH_DIR / f"{GROUP}.json"


@pytest.fixture(scope="module")
def doc():
    assert PATH.is_file(), f"{PATH} is missing: run `python finetune.py`"
    return json.loads(PATH.read_text())


def test_table_loads_through_the_ground_truth_loader(doc):
    table = load_ground_truth(GROUP)
    assert table == doc[GROUP]
    assert len(table) >= 4
    assert all(len(row) >= 6 for row in table.values())
    info = ground_truth_info(GROUP)
    assert info["unit"] == "percent" and info["elapsed_seconds"] > 0
    assert set(info["dataset_measure"]) == set(table)


def test_protocol_is_a_valid_config(doc):
    protocol = {k: v for k, v in doc["protocol"].items() if k != "description"}
    cfg = FinetuneConfig.from_dict(protocol)
    assert len(cfg.lrs) >= 2


def test_every_value_is_the_test_accuracy_of_the_best_validation_lr(doc):
    cfg = FinetuneConfig.from_dict({k: v for k, v in doc["protocol"].items() if k != "description"})
    for dataset, row in doc[GROUP].items():
        for model, value in row.items():
            run = doc["runs"][dataset][model]
            assert [r["lr"] for r in run["per_lr"]] == list(cfg.lrs)
            best = select_best_lr({r["lr"]: r["val_acc"] for r in run["per_lr"]})
            assert run["best_lr"] == best
            chosen = next(r for r in run["per_lr"] if r["lr"] == best)
            assert value == pytest.approx(chosen["test_acc"], abs=0.01)
            assert 0.0 <= value <= 100.0
            assert run["n_train"] == cfg.n_train_per_class * run["num_classes"]
            assert run["n_test"] == cfg.n_test_per_class * run["num_classes"]


def test_models_are_differentiated(doc):
    """A ground truth where every model scores the same cannot rank anything."""
    spreads = [max(row.values()) - min(row.values()) for row in doc[GROUP].values()]
    assert sum(s >= 5.0 for s in spreads) >= len(spreads) - 1
