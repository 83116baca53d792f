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
    cfg = FinetuneConfig.from_dict(doc["protocol"])       # its prose "description" is ignored
    assert len(cfg.lrs) >= 2


def test_every_value_is_the_test_accuracy_of_the_best_validation_lr(doc):
    cfg = FinetuneConfig.from_dict(doc["protocol"])
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


# --- protocol v2: the committed partial results (data/ground_truth/partial/), filled in chunks ------
V2_PARTIAL = GROUND_TRUTH_DIR / "partial" / "offline_zoo_v2.partial.json"


@pytest.mark.skipif(not V2_PARTIAL.is_file(), reason="no v2 partial results committed yet")
def test_v2_partial_results_follow_their_protocol():
    """Every finished v2 cell: best lr picked on val among the search runs, lr_bracketed right,
    n_seeds runs at that lr, the value the mean of their test accuracies; every finished single
    run belongs to the protocol's lr / seed values."""
    import numpy as np

    from finetuning.runner import is_bracketed

    doc = json.loads(V2_PARTIAL.read_text())
    cfg = FinetuneConfig.from_dict(doc["protocol"])
    assert cfg.n_seeds >= 3 and cfg.n_train_per_class >= 100 and cfg.max_lr_extensions >= 1
    for dataset, row in doc["runs"].items():
        for model, run in row.items():
            search = {r["lr"]: r["val_acc"] for r in run["per_lr"]}
            assert list(search)[:len(cfg.lrs)] == list(cfg.lrs), (dataset, model)
            assert run["best_lr"] == select_best_lr(search)
            assert run["lr_bracketed"] == is_bracketed(list(search), run["best_lr"])
            assert [r["seed"] for r in run["seed_runs"]] == list(cfg.seeds)
            assert all(r["lr"] == run["best_lr"] for r in run["seed_runs"])
            assert run["test_acc_seeds"] == [r["test_acc"] for r in run["seed_runs"]]
            assert run["test_acc"] == pytest.approx(np.mean(run["test_acc_seeds"]))
            assert run["test_acc_std"] == pytest.approx(np.std(run["test_acc_seeds"], ddof=1))
    for dataset, row in doc.get("trials", {}).items():
        for model, trials in row.items():
            for t in trials.values():
                assert t["seed"] in cfg.seeds and 0 <= t["test_acc"] <= 100 and t["seconds"] > 0


V2_TABLE = GROUND_TRUTH_DIR / "offline_zoo_v2.json"


def test_v2_table_is_complete_and_is_its_partial_files_cells():
    """The finished v2 table: every allowed cell of every candidate of the offline zoo, each with
    >= 3 seeds and a bracketed optimum; its values, seeds and protocol are the partial file's."""
    import models
    from data.ground_truth import ground_truth_seeds
    from finetuning.protocol import excluded
    from finetuning.results import read_finished

    assert V2_TABLE.is_file(), f"{V2_TABLE} is missing: finetune.py writes it when the last cell is done"
    doc = json.loads(V2_TABLE.read_text())
    table = load_ground_truth("offline_zoo_v2")
    zoo = [m for g in ("offline", "offline_trained") for m in models.list_models(g)]
    assert len(zoo) >= 24 and set(table) == {"fashion_mnist", "mnist", "digits", "textures"}
    for dataset, row in table.items():
        assert set(row) == {m for m in zoo if not excluded(m, dataset)}, dataset
        assert sorted(doc["excluded_cells"][dataset]) == sorted(m for m in zoo if excluded(m, dataset))
        for model in row:
            run = doc["runs"][dataset][model]
            assert run["lr_bracketed"] and len(run["test_acc_seeds"]) >= 3, (dataset, model)
    config, values, seeds = read_finished(V2_PARTIAL)
    assert FinetuneConfig.from_dict(doc["protocol"]) == config
    assert table == values and ground_truth_seeds("offline_zoo_v2") == seeds


PROBE = GROUND_TRUTH_DIR / "offline_probe.json"


@pytest.mark.skipif(not PROBE.is_file(), reason="no linear-probe table committed yet")
def test_probe_table_and_its_agreement_recompute():
    from finetuning.probe import PROBE_GROUP, rank_agreement

    doc = json.loads(PROBE.read_text())
    table = load_ground_truth(PROBE_GROUP)
    assert table == doc[PROBE_GROUP]
    for dataset, row in table.items():
        for model, value in row.items():
            run = doc["runs"][dataset][model]
            assert value == run["test_acc"] and run["C"] in run["cs"] and run["folds"] == doc["protocol"]["probe_folds"]
        for name, agree in doc["agreement"].get(dataset, {}).items():
            if name in ("offline_zoo",):
                assert agree["kendall_tau"] == rank_agreement(row, load_ground_truth(name)[dataset])


def test_finished_cells_keep_allowed_cells_of_datasets_with_two(tmp_path):
    import json

    from evaluation.offline_benchmark import finished_cells
    from finetuning import FinetuneConfig
    run = lambda seeds: {"test_acc": sum(seeds) / len(seeds), "test_acc_seeds": seeds}   # noqa: E731
    doc = {"protocol": FinetuneConfig().to_dict(), "trials": {},
           "runs": {"fashion_mnist": {"efficientnet_lite0": run([80.0, 82.0]), "ocr_det": run([70.0, 71.0]),
                                      "fmnist_resnet_e4": run([90.0, 90.0])},     # its own source: left out
                    "mnist": {"ocr_det": run([95.0, 96.0])}}}                     # one cell: dataset left out
    (tmp_path / "g.partial.json").write_text(json.dumps(doc))
    names = ["efficientnet_lite0", "ocr_det", "fmnist_resnet_e4"]
    truth, seeds = finished_cells("g", tmp_path, names, ["fashion_mnist", "mnist"])
    assert truth == {"fashion_mnist": {"efficientnet_lite0": 81.0, "ocr_det": 70.5}}
    assert seeds == {"fashion_mnist": {"efficientnet_lite0": [80.0, 82.0], "ocr_det": [70.0, 71.0]}}
    with pytest.raises(ValueError, match="no dataset"):
        finished_cells("g", tmp_path, names, ["mnist"])
    with pytest.raises(FileNotFoundError, match="h.partial.json"):
        finished_cells("h", tmp_path, names, ["mnist"])
