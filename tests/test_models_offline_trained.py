"""Networks pre-trained here on offline source data (models/offline_trained.py, finetuning/pretrain.py)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import models
from data.fingerprint import file_sha256
from finetuning.engine import accuracy_percent
from finetuning.pretrain import PretrainRecipe, check_tensors, run_pretraining
from models.offline_trained import (DOMAINS, WEIGHTS_DIR, excluded_targets, load_network, load_provenance,
                                    source_label_offsets)

PROVENANCE = load_provenance()
NAMES = list(PROVENANCE)


@pytest.fixture(autouse=True)
def _keep_global_rng():
    """New heads are initialised from the global RNG: later tests see the state they would without these."""
    with torch.random.fork_rng(devices=[]):
        yield


def test_zoo_registered_from_provenance():
    assert len(NAMES) >= 8
    assert models.list_models("offline_trained") == NAMES
    total = 0
    for name in NAMES:
        rec, entry = PROVENANCE[name], models.model_info(name)
        path = WEIGHTS_DIR / rec["weights_file"]
        assert entry.group == "offline_trained"
        assert file_sha256(path) == rec["sha256"], f"{name}: weight file differs from its provenance"
        assert path.stat().st_size == rec["size_bytes"]
        total += rec["size_bytes"]
        assert entry.source_datasets == tuple(s["dataset"] for s in rec["sources"])
        assert rec["num_source_classes"] == sum(len(s["classes"]) for s in rec["sources"])
        assert rec["recipe"]["name"] == name and rec["val_accuracy"] > 100.0 / rec["num_source_classes"]
    assert total <= 50e6


def test_disjointness_rule():
    assert excluded_targets(["mnist"]) == ("digits", "mnist")
    assert excluded_targets(["easyvqa_colors"]) == ("easyvqa_colors", "easyvqa_shapes")
    assert excluded_targets(["fashion_mnist", "textures"]) == ("fashion_mnist", "textures")
    assert excluded_targets(["new_set"]) == ("new_set",)
    assert source_label_offsets([10, 3, 8]) == [0, 10, 13]
    for name in NAMES:
        entry = models.model_info(name)
        assert entry.excluded_targets == excluded_targets(entry.source_datasets)
        for dataset in DOMAINS:
            same_domain = any(DOMAINS[dataset] == DOMAINS[s] for s in entry.source_datasets)
            assert models.target_allowed(name, dataset) is not same_domain
    # every benchmark target has at least 4 candidates it may be used with
    for target in ("fashion_mnist", "mnist", "digits", "textures"):
        assert sum(models.target_allowed(n, target) for n in NAMES) >= 4, target
    assert models.target_allowed("efficientnet_lite0", "mnist")


@pytest.mark.parametrize("name", NAMES)
def test_loads_features_and_reproduces_source_accuracy(name):
    rec = PROVENANCE[name]
    m = models.create_model(name, device="cpu")
    assert m.input_hw == (rec["input_size"],) * 2 and m.num_source_classes == rec["num_source_classes"]
    x, y = check_tensors(rec)
    assert tuple(x.shape[1:]) == (3, rec["input_size"], rec["input_size"])
    feats, logits = m.features_and_source_logits(x)
    assert feats.shape == (len(y), rec["feature_dim"]) and logits.shape == (len(y), rec["num_source_classes"])
    again = m.features(x[:16])
    assert torch.equal(again, feats[:16])                       # deterministic, batch-independent up to fp
    acc = 100.0 * float((logits.argmax(1) == y).float().mean())
    assert abs(acc - rec["check_accuracy"]) <= 1.0, f"{name}: check accuracy {acc:.2f} vs recorded {rec['check_accuracy']}"


def test_create_trainable_keeps_backbone_new_head():
    name = NAMES[0]
    rec = PROVENANCE[name]
    net, preprocess = models.create_trainable(name, 5)
    ref = load_network(rec)
    assert net.training and all(p.requires_grad for p in net.parameters())
    for k, v in ref.body.state_dict().items():
        assert torch.equal(net.body.state_dict()[k], v)
    x = torch.randn(4, 3, rec["input_size"], rec["input_size"])
    assert net(x).shape == (4, 5)
    assert net.head.out_features == 5


def test_missing_or_corrupt_weights_raise_clear_errors(tmp_path):
    rec = PROVENANCE[NAMES[0]]
    with pytest.raises(FileNotFoundError, match="pretrain_offline.py"):
        load_network(rec, weights_dir=tmp_path)
    shutil.copy(WEIGHTS_DIR / rec["weights_file"], tmp_path / rec["weights_file"])
    assert load_network(rec, weights_dir=tmp_path) is not None
    with pytest.raises(ValueError, match="sha256"):
        load_network({**rec, "sha256": "0" * 64}, weights_dir=tmp_path)


def test_pretraining_is_seeded_and_resumable(tmp_path, capsys):
    recipe = PretrainRecipe("tiny", "mlp", ("digits",), 8, epochs=2, arch_kwargs={"width": 32}, n_per_class=10)
    first = run_pretraining([recipe], tmp_path, progress=False)[0]
    assert first["excluded_targets"] == ["digits", "mnist"] and first["sources"][0]["n_images"] == 100
    mtime = (tmp_path / "tiny.pt").stat().st_mtime_ns
    assert run_pretraining([recipe], tmp_path, progress=False)[0] == first        # skipped
    assert (tmp_path / "tiny.pt").stat().st_mtime_ns == mtime and "skipped" in capsys.readouterr().out
    again = run_pretraining([recipe], tmp_path, force=True, progress=False)[0]
    assert again["sha256"] == first["sha256"]                                     # same seed, same weights
    changed = PretrainRecipe("tiny", "mlp", ("digits",), 8, epochs=3, arch_kwargs={"width": 32}, n_per_class=10)
    third = run_pretraining([changed], tmp_path, progress=False)[0]               # recipe changed: retrained
    assert third["epochs"] == 3 and third["sha256"] != first["sha256"]
    stored = json.loads((tmp_path / "PROVENANCE.json").read_text())["networks"]
    assert list(stored) == ["tiny"] and stored["tiny"]["sha256"] == third["sha256"]
    net = load_network(third, weights_dir=tmp_path)
    x, y = check_tensors(third)
    assert abs(accuracy_percent(net, x, y) - third["check_accuracy"]) < 1e-6
    with pytest.raises(ValueError, match="unknown networks"):
        run_pretraining([recipe], tmp_path, only=["nope"])


def test_pretraining_leaves_the_global_rng_alone(tmp_path):
    recipe = PretrainRecipe("tiny", "mlp", ("digits",), 8, epochs=1, arch_kwargs={"width": 16}, n_per_class=5)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run_pretraining([recipe], tmp_path, progress=False)
    assert torch.equal(torch.rand(3), expected)
