"""Ground truth of the offline REC benchmark: per candidate, a FiLM box head trained on its frozen
spatial map + expression embedding (composed scenes), test Acc@0.5 -> data/ground_truth/offline_rec.json.

Resumable: finished candidates are kept in PARTIAL; re-running trains only the missing ones.

    python finetune_rec.py
"""
from pathlib import Path

import tasks  # noqa: F401
from tasks import rec
from tasks.cli import ground_truth_main

ROOT = Path(__file__).resolve().parent
CANDIDATES = rec.CANDIDATES
DATASET = rec.DATASET
CACHE_DIR = "cache"
OUTPUT = ROOT / "data" / "ground_truth" / "offline_rec.json"
PARTIAL = ROOT / "results" / "offline_rec" / "ground_truth_runs.json"
ABOUT = ("Measured here: Acc@0.5 (percent of test expressions whose predicted box has IoU >= 0.5) of a FiLM box "
         "head (L1 + GIoU) trained per candidate on its frozen spatial feature map and frozen expression "
         "embedding. The scenes (train 400 / test 200, <= 2 expressions each) are composed here from real MNIST / "
         "Fashion-MNIST / easy-VQA images by tasks/rec_scenes.py: NOT a published benchmark.")

if __name__ == "__main__":
    raise SystemExit(ground_truth_main(rec, __doc__.splitlines()[0], group="offline_rec", measure="Acc@0.5",
                                       unit="percent", about=ABOUT, candidates=CANDIDATES, dataset=DATASET,
                                       cache_dir=CACHE_DIR, output=OUTPUT, partial=PARTIAL))
