"""Ground truth of the offline REC benchmark (scenes composed here): per candidate, its backbone and a
FiLM box head fine-tuned end to end -> data/ground_truth/offline_rec.json (test Acc@0.5).

    python finetune_rec.py                      # the committed table (resumes per candidate and lr)
    python finetune_rec.py --mode head          # the cheap yardstick: the head on frozen maps

Protocol: tasks/rec.py (GT_PROTOCOLS) and tasks/heads.py; docs/tasks.md states it and its cost.
"""
from pathlib import Path

import tasks  # noqa: F401
from tasks import rec
from tasks.cli import ground_truth_main

ROOT = Path(__file__).resolve().parent
CANDIDATES = {"finetuned": rec.CANDIDATES, "head": rec.CANDIDATES}
DATASET = rec.DATASET
CACHE_DIR = "cache"
OUTPUT = {"finetuned": ROOT / "data" / "ground_truth" / "offline_rec.json",
          "head": ROOT / "data" / "ground_truth" / "offline_rec_head.json"}
PARTIAL = {mode: ROOT / "data" / "ground_truth" / "partial" / f"offline_rec.{mode}.partial.json" for mode in OUTPUT}
_SET = ("Acc@0.5 = percent of test expressions whose predicted box has IoU >= 0.5; L1 + GIoU loss; images at 112 px "
        "for extraction and training alike. The scenes (train 400 / test 200, <= 2 expressions each) are composed "
        "here from real MNIST / Fashion-MNIST / easy-VQA images by tasks/rec_scenes.py: NOT a published benchmark.")
ABOUT = {"finetuned": "Measured here: Acc@0.5 after fine-tuning each candidate's backbone and a FiLM box head end "
                      "to end on its spatial map (expression embedding frozen). " + _SET,
         "head": "Measured here (a cheap yardstick, not the fine-tuned table): Acc@0.5 of a FiLM box head trained "
                 "on each candidate's frozen spatial map and frozen expression embedding. " + _SET}

if __name__ == "__main__":
    raise SystemExit(ground_truth_main(rec, __doc__.splitlines()[0], group="offline_rec", measure="Acc@0.5",
                                       unit="percent", about=ABOUT, candidates=CANDIDATES, dataset=DATASET,
                                       cache_dir=CACHE_DIR, output=OUTPUT, partial=PARTIAL))
