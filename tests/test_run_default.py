"""The embedded default end to end on a small subset: real offline models, real images, the default
encoders' label embeddings, metrics judged against the committed fine-tuned ground truth (v2 on its
own protocol features by default, v1 on sampled features on request), tables and PNGs written."""
import json

import pandas as pd
import pytest

import run_default


@pytest.mark.slow
def test_run_default_small_subset(tmp_path, capsys):
    cache, results = tmp_path / "cache", tmp_path / "results"
    argv = ["--datasets", "textures", "--models", "efficientnet_lite0", "ocr_det", "ocr_cls",
            "--metrics", "emms", "logme", "leep", "transrate",
            "--cache-dir", str(cache), "--results-dir", str(results), "--quiet"]
    assert run_default.main(argv) == 0
    out = capsys.readouterr().out
    assert "weighted_tau" in out and "textures" in out and "bootstrap interval" in out
    assert "protocol features: 100 training images per class at 112 px" in out

    files = {p.name for p in results.rglob("*") if p.is_file()}
    assert "textures_scores_vs_truth.png" in files and "summary_weighted_tau.png" in files
    assert "weighted_tau_summary.csv" in files and "weighted_tau_significance.csv" in files
    for png in results.rglob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((results / "results.json").read_text())
    assert doc["group"] == "offline_zoo_v2"
    ranking = pd.read_csv(next(results.rglob("*ranking*.csv")))
    assert {"emms", "logme", "leep", "transrate"} <= set(ranking["metric"])
    # every metric was judged against the three models' fine-tuned accuracies
    assert ranking.loc[ranking["metric"] == "emms", "weighted_tau"].between(-1, 1).all()

    # resumption: a second run computes no score
    assert run_default.main(argv) == 0
    assert "0 score(s) computed" in capsys.readouterr().out

    # the v1 table on sampled features at native resolution
    v1 = ["--datasets", "textures", "--models", "ocr_det", "ocr_cls", "efficientnet_lite0", "--n-per-class", "10",
          "--ground-truth", "offline_zoo", "--features", "sampled", "--metrics", "emms", "--n-boot", "20",
          "--no-plots", "--quiet", "--cache-dir", str(tmp_path / "c1"), "--results-dir", str(tmp_path / "r1")]
    assert run_default.main(v1) == 0
    assert "sampled features: 10 train images per class" in capsys.readouterr().out
    assert json.loads((tmp_path / "r1" / "results.json").read_text())["group"] == "offline_zoo"


def test_run_default_rejects_dataset_without_ground_truth(tmp_path):
    with pytest.raises(SystemExit, match="lfw_faces"):
        run_default.main(["--datasets", "lfw_faces", "--cache-dir", str(tmp_path / "c"),
                          "--results-dir", str(tmp_path / "r")])


def test_run_default_protocol_features_and_finished_cells(tmp_path, monkeypatch, capsys):
    """--features protocol scores the ground truth's own training images (its recorded protocol);
    --finished-cells judges against a partial-results file's finished cells only."""
    import numpy as np

    from data.ground_truth import register_ground_truth_file
    from finetuning import FinetuneConfig

    cfg = FinetuneConfig(n_train_per_class=12, n_val_per_class=2, n_test_per_class=3)
    small = ["fmnist_resnet_e1", "fmnist_vgg_e5", "shapes_resnet_e8"]
    table = tmp_path / "default_proto_xyz.json"
    table.write_text(json.dumps({"about": "t", "protocol": cfg.to_dict(), "default_proto_xyz": {
        "textures": {"fmnist_resnet_e1": 40.0, "fmnist_vgg_e5": 70.0, "shapes_resnet_e8": 60.0}}}))
    register_ground_truth_file(table)
    common = ["--datasets", "textures", "--metrics", "emms", "logme", "--n-boot", "20", "--no-plots", "--quiet",
              "--cache-dir", str(tmp_path / "c")]
    # without --models: the table's models of MODEL_GROUP (the default group "offline" has none of these)
    with pytest.raises(SystemExit, match="no model of the registry group 'offline'"):
        run_default.main(common + ["--ground-truth", "default_proto_xyz", "--results-dir", str(tmp_path / "r0")])
    monkeypatch.setattr(run_default, "MODEL_GROUP", "offline_trained")
    assert run_default.main(common + ["--ground-truth", "default_proto_xyz", "--features", "protocol",
                                      "--results-dir", str(tmp_path / "r1")]) == 0
    out = capsys.readouterr().out
    assert "protocol features: 12 training images per class" in out and "bootstrap interval" in out
    assert np.load(tmp_path / "c" / "features" / "textures" / "fmnist_vgg_e5.npy").shape[0] == 36
    assert sorted(json.loads((tmp_path / "r1" / "results.json").read_text())["datasets"]["textures"]["models"]) == small
    from evaluation.report import markdown_table
    lines = markdown_table(tmp_path / "r1").splitlines()
    assert lines[0].startswith("| metric | models scored | wτ textures | mean wτ [95% CI]") and len(lines) == 4
    assert {ln.split(" | ")[0][2:] for ln in lines[2:]} == {"emms", "logme"}
    assert all(ln.split(" | ")[1] == "3" for ln in lines[2:])
    with pytest.raises(FileNotFoundError, match="summary.csv"):
        markdown_table(tmp_path / "nothing")

    # interim: only the finished cells of the partial file (2 of 3 here) are judged
    partial_dir = tmp_path / "partial"
    partial_dir.mkdir()
    runs = {"textures": {m: {"test_acc": v, "test_acc_seeds": [v - 1, v + 1]}
                         for m, v in (("fmnist_vgg_e5", 70.0), ("shapes_resnet_e8", 60.0))}}
    (partial_dir / "filling_xyz.partial.json").write_text(json.dumps({"protocol": cfg.to_dict(), "runs": runs}))
    monkeypatch.setattr(run_default, "PARTIAL_DIR", partial_dir)
    assert run_default.main(common + ["--ground-truth", "filling_xyz", "--finished-cells",
                                      "--results-dir", str(tmp_path / "r2")]) == 0
    doc = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert sorted(doc["datasets"]["textures"]["models"]) == ["fmnist_vgg_e5", "shapes_resnet_e8"]
    assert "finished cells" in doc["group"]
    with pytest.raises(SystemExit, match="finished cells|--finished-cells"):
        run_default.main(common + ["--ground-truth", "filling_xyz", "--results-dir", str(tmp_path / "r3")])
