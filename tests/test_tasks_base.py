"""The task-plugin contract: registration fills every registry; bad plugins fail at construction."""
import numpy as np
import pytest

import tasks
from data.registry import DATASETS, DatasetSpec
from evaluation.inputs import LABEL_SOURCES, LabelSource
from evaluation.runner import TASKS, TaskSpec
from tasks.base import TASK_PLUGINS, TaskPlugin, get_task_plugin, metrics_for, register_task
from tasks.fusion import bilinear_fusion
from tasks.text import get_question_encoder


def _spec(name, source="captions"):
    return TaskSpec(name=name, label_source=source, provides=frozenset({"features", "label_embeddings"}),
                    default_metrics=("emms",), default_group="g")


def test_every_task_module_registers_its_plugin_spec_and_datasets():
    for module in tasks.TASK_MODULES:
        name = module.rsplit(".", 1)[1]
        plugin = TASK_PLUGINS[name]
        assert TASKS[name] is plugin.specs[0]
        for ds in plugin.datasets:
            assert DATASETS[ds.name] is ds
        for source in plugin.label_sources:
            assert LABEL_SOURCES[source.name] is source
        assert get_task_plugin(name) is plugin


def test_register_task_adds_spec_label_source_and_dataset_once():
    source = LabelSource(name="_test_texts", path=lambda layout, d, e: layout.caption_embedding(d, e),
                         needs_labels=False, description="test")
    ds = DatasetSpec(name="_test_task_set", kind="rec", build=lambda root, split: None, splits=("train",),
                     description="test")
    plugin = TaskPlugin(name="_test_task", specs=(_spec("_test_task", "_test_texts"), _spec("_test_task_v")),
                        evaluate_script="evaluate_metric_caption.py",
                        label_text={"_test_task": "a", "_test_task_v": "b"}, measure="F1", description="test",
                        label_sources=(source,), datasets=(ds,))
    register_task(plugin)
    assert TASKS["_test_task_v"].label_source == "captions"
    assert LABEL_SOURCES["_test_texts"] is source and DATASETS["_test_task_set"] is ds
    assert get_task_plugin("_test_task_v") is plugin
    with pytest.raises(ValueError, match="registered twice"):
        register_task(plugin)


@pytest.mark.parametrize("kwargs, match", [
    (dict(specs=(_spec("other"),)), "first TaskSpec must be named"),
    (dict(evaluate_script="run.py"), "evaluate_script must be one of"),
    (dict(label_text={}), "no label_text stated"),
    (dict(specs=(_spec("_bad", "no_such_source"),)), "unknown label source"),
])
def test_bad_plugins_fail_at_construction(kwargs, match):
    base = dict(name="_bad", specs=(_spec("_bad"),), evaluate_script="evaluate_metric_cls.py",
                label_text={"_bad": "x"}, measure="accuracy", description="d")
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        TaskPlugin(**base)


def test_metrics_for_excludes_metrics_needing_missing_inputs():
    names = metrics_for({"features", "label_embeddings"})
    assert "emms" in names and "logme_flabel" in names
    assert "leep" not in names and "logme" not in names           # need source_probs / labels


def test_bilinear_fusion_shapes_determinism_and_no_mutation():
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(5, 700)), rng.normal(size=(5, 8))
    before = img.copy()
    x = bilinear_fusion(img, txt, random_state=1)
    assert x.shape == (5, 512 + 16) and x.dtype == np.float32
    np.testing.assert_array_equal(img, before)
    np.testing.assert_array_equal(x, bilinear_fusion(img, txt, random_state=1))
    assert not np.allclose(x, bilinear_fusion(img, txt, random_state=2))
    np.testing.assert_allclose(np.linalg.norm(x[:, 512:520], axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="same N"):
        bilinear_fusion(img, txt[:4])


def test_bow_encoder_is_deterministic_and_word_order_free():
    enc = get_question_encoder("bow")
    a = enc.encode(["what color is the shape?", "shape the is color what", "is there a red circle"])
    np.testing.assert_allclose(a[0], a[1])
    assert not np.allclose(a[0], a[2])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    with pytest.raises(KeyError, match="unknown question encoder"):
        get_question_encoder("no_such_encoder")


@pytest.mark.parametrize("group, dataset, measure", [("offline_vqa", "easyvqa_vqa", "accuracy"),
                                                     ("offline_rec", "rec_scenes", "Acc@0.5")])
def test_shipped_task_ground_truth_names_its_measure_and_has_six_candidates(group, dataset, measure):
    from data.ground_truth import ground_truth_info, load_ground_truth
    table = load_ground_truth(group)
    info = ground_truth_info(group)
    assert list(table) == [dataset] and len(table[dataset]) >= 6
    assert info["dataset_measure"] == {dataset: measure}
    assert all(0 <= v <= 100 for v in table[dataset].values())
    assert set(info["runs"]) == set(table[dataset])      # every value comes from a recorded run
    for name, run in info["runs"].items():
        assert run["test"] == table[dataset][name] and run["best_lr"] in [r["lr"] for r in run["per_lr"]]
