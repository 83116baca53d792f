"""Ground truth of the offline VQA benchmark: per candidate, an answer head trained on its frozen
image feature + question embedding (easy-VQA subset), test accuracy -> data/ground_truth/offline_vqa.json.

Resumable: finished candidates are kept in PARTIAL; re-running trains only the missing ones.

    python finetune_vqa.py
    python finetune_vqa.py --candidates efficientnet_lite0+minilm ocr_cls+bow --output /tmp/gt.json
"""
import argparse
from pathlib import Path

import tasks  # noqa: F401
from tasks import vqa
from tasks.pipeline import write_ground_truth_file

ROOT = Path(__file__).resolve().parent
CANDIDATES = vqa.CANDIDATES
DATASET = vqa.DATASET
CACHE_DIR = "cache"
OUTPUT = ROOT / "data" / "ground_truth" / "offline_vqa.json"
PARTIAL = ROOT / "results" / "offline_vqa" / "ground_truth_runs.json"

ABOUT = ("Measured here: answer accuracy (percent) on 1000 held-out easy-VQA test questions of an answer head "
         "trained per candidate on its frozen image feature and frozen question embedding (2000 seeded train "
         "questions, 80/20 fit/validation, lr chosen on validation). easy-VQA is a published synthetic VQA set "
         "(PyPI easy-vqa 1.0); the subset and the candidates are ours, not a published benchmark.")

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    p.add_argument("--dataset", default=DATASET)
    p.add_argument("--cache-dir", default=CACHE_DIR)
    p.add_argument("--output", type=Path, default=OUTPUT)
    p.add_argument("--partial", type=Path, default=PARTIAL)
    p.add_argument("--device", default=None)
    a = p.parse_args()
    runs = vqa.ground_truth(a.candidates, cache_dir=a.cache_dir, partial_path=a.partial, dataset=a.dataset,
                            device=a.device)
    path = write_ground_truth_file(a.output, group="offline_vqa", dataset=a.dataset, measure="accuracy",
                                   unit="percent", runs=runs, about=ABOUT, protocol=vqa.GT_PROTOCOL,
                                   source="finetune_vqa.py (this repository)")
    print(f"wrote {path}")
