"""End-to-end: the offline MLL benchmark on a small subset (real stand-ins, real offline data)."""
import json

import numpy as np
import pandas as pd
import pytest

import mll_benchmark

MODELS = ["conse-lite0-names", "conse-lite1-names"]      # same label texts: one text-encoding pass


@pytest.mark.slow
def test_offline_benchmark_end_to_end(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["--models", *MODELS, "--sources", "textures", "lfw_faces", "--targets", "textures", "lfw_faces",
            "--images-per-node", "3", "--per-class", "4", "--image-size", "64", "--n-orders", "3",
            "--n-distractors", "8", "--cache-dir", str(cache), "--out-dir", str(out), "--no-progress"]
    summary = mll_benchmark.main(argv)
    res = out / "offline"
    for name in ("main_table.csv", "main_table.md", "ground_truth.csv", "alpha_ablation.csv", "k_ablation.csv",
                 "hub_growth.csv", "hub_growth.png", "graph.json", "summary.json"):
        assert (res / name).is_file(), name

    table = pd.read_csv(res / "main_table.csv", index_col=0)
    gt = pd.read_csv(res / "ground_truth.csv", index_col=0)
    assert list(table.columns) == ["textures", "lfw_faces", "Avg."]
    for k in (1, 3):
        for method in ("INB", "ModelGPT", "MLL"):
            assert f"{method} (k={k})" in table.index
    values = table.to_numpy()
    assert np.all((values >= 0) & (values <= 1))
    np.testing.assert_allclose(table["Avg."], table[["textures", "lfw_faces"]].mean(axis=1), atol=1e-4)

    # INB with k=1 reuses the model with the best graph ("ImageNet") score: its ground-truth accuracy
    scores = summary["imagenet_scores"]
    best = sorted(scores, key=lambda m: (-scores[m], m))[0]
    np.testing.assert_allclose(table.loc["INB (k=1)", ["textures", "lfw_faces"]].to_numpy(float),
                               gt.loc[best, ["textures", "lfw_faces"]].to_numpy(float), atol=1e-4)
    np.testing.assert_allclose(table.loc["best single model (oracle)", ["textures", "lfw_faces"]].to_numpy(float),
                               gt.max(axis=0).to_numpy(float), atol=1e-4)

    # hub growth: with the whole hub every order gives MLL's k=1 average
    growth = pd.read_csv(res / "hub_growth.csv", index_col=0)
    np.testing.assert_allclose(growth.loc[len(MODELS), "MLL mean"], table.loc["MLL (k=1)", "Avg."], atol=1e-4)
    np.testing.assert_allclose(growth.loc[len(MODELS), "MLL std"], 0.0, atol=1e-9)
    abl = pd.read_csv(res / "alpha_ablation.csv", index_col=0).iloc[:, 0]
    np.testing.assert_allclose(abl.loc[0.7], table.loc["MLL (k=1)", "Avg."], atol=1e-4)

    graph = json.loads((res / "graph.json").read_text())
    wnids = {n["wnid"] for n in graph["node_list"]}
    assert {"n02897820", "n12102133", "n14698884", "n05600637", "n05933834"} <= wnids   # the mapped classes
    assert all(len(n["images"]) <= 3 for n in graph["node_list"])

    assert summary["variant"] == "released" and summary["method"]["class_score"] == "f1"
    assert summary["graph"]["construction"] == {"lemma_match": True, "expansion": "hyponyms"}
    assert summary["graph"]["image_nodes"] > 5                              # every sense of every lemma

    # second run: everything comes from the caches (node texts, image features) and gives the same table
    stamps = {p: p.stat().st_mtime_ns for p in (cache / "mll").rglob("*") if p.is_file()}
    assert len(list((cache / "mll" / "node_text").rglob("*.npy"))) == len(MODELS)
    mll_benchmark.main(argv)
    assert {p: p.stat().st_mtime_ns for p in (cache / "mll").rglob("*") if p.is_file()} == stamps
    pd.testing.assert_frame_equal(pd.read_csv(res / "main_table.csv", index_col=0), table)

    # the reconstruction variant: candidate labels on the class synsets + ancestors
    rec = mll_benchmark.main(argv + ["--variant", "reconstruction", "--n-orders", "1"])
    assert rec["method"]["labeling"] == "candidates" and rec["graph"]["construction"]["expansion"] == "ancestors"
    labels = [p for p in (cache / "mll" / "labels").rglob("*.json") if not p.name.endswith(".record.json")]
    assert len(labels) == len(MODELS)                                       # + one provenance record each
