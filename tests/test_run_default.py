"""The embedded default end to end on a small subset: real offline models, real images, the default
encoders' label embeddings, metrics judged against the committed fine-tuned ground truth, tables and PNGs written."""
import json

import pandas as pd
import pytest

import run_default


@pytest.mark.slow
def test_run_default_small_subset(tmp_path, capsys):
    cache, results = tmp_path / "cache", tmp_path / "results"
    argv = ["--datasets", "textures", "--models", "efficientnet_lite0", "ocr_det", "ocr_cls",
            "--n-per-class", "20", "--metrics", "emms", "logme", "leep", "transrate",
            "--cache-dir", str(cache), "--results-dir", str(results), "--quiet"]
    assert run_default.main(argv) == 0
    out = capsys.readouterr().out
    assert "weighted_tau" in out and "textures" in out and "bootstrap interval" in out

    files = {p.name for p in results.rglob("*") if p.is_file()}
    assert "textures_scores_vs_truth.png" in files and "summary_weighted_tau.png" in files
    assert "weighted_tau_summary.csv" in files and "weighted_tau_significance.csv" in files
    for png in results.rglob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((results / "results.json").read_text())
    assert doc["group"] == "offline_zoo"
    ranking = pd.read_csv(next(results.rglob("*ranking*.csv")))
    assert {"emms", "logme", "leep", "transrate"} <= set(ranking["metric"])
    # every metric was judged against the three models' fine-tuned accuracies
    assert ranking.loc[ranking["metric"] == "emms", "weighted_tau"].between(-1, 1).all()

    # resumption: a second run computes no score
    assert run_default.main(argv) == 0
    assert "0 score(s) computed" in capsys.readouterr().out


def test_run_default_rejects_dataset_without_ground_truth(tmp_path):
    with pytest.raises(SystemExit, match="lfw_faces"):
        run_default.main(["--datasets", "lfw_faces", "--cache-dir", str(tmp_path / "c"),
                          "--results-dir", str(tmp_path / "r")])
