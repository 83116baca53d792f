"""Ground truth of the offline VQA benchmark: per candidate, an answer head trained on its frozen
image feature + question embedding (easy-VQA subset), test accuracy -> data/ground_truth/offline_vqa.json.

Resumable: finished candidates are kept in PARTIAL; re-running trains only the missing ones.

    python finetune_vqa.py
    python finetune_vqa.py --candidates efficientnet_lite0+minilm ocr_cls+bow --output /tmp/gt.json
"""
from pathlib import Path

import tasks  # noqa: F401
from tasks import vqa
from tasks.cli import ground_truth_main

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
    raise SystemExit(ground_truth_main(vqa, __doc__.splitlines()[0], group="offline_vqa", measure="accuracy",
                                       unit="percent", about=ABOUT, candidates=CANDIDATES, dataset=DATASET,
                                       cache_dir=CACHE_DIR, output=OUTPUT, partial=PARTIAL))
