"""Ground truth of the offline VQA benchmark (easy-VQA subset): per candidate, its image backbone and
an answer head fine-tuned end to end -> data/ground_truth/offline_vqa.json (test answer accuracy).

    python finetune_vqa.py                      # the committed table (resumes per candidate and lr)
    python finetune_vqa.py --mode head          # the cheap yardstick: the head on frozen features
    python finetune_vqa.py --candidates efficientnet_lite0+minilm ocr_cls+bow --output /tmp/gt.json

Protocol: tasks/vqa.py (GT_PROTOCOLS) and tasks/heads.py; docs/tasks.md states it and its cost.
"""
from pathlib import Path

import tasks  # noqa: F401
from tasks import vqa
from tasks.cli import ground_truth_main

ROOT = Path(__file__).resolve().parent
CANDIDATES = {"finetuned": vqa.FINETUNED_CANDIDATES, "head": vqa.CANDIDATES}
DATASET = vqa.DATASET
CACHE_DIR = "cache"
OUTPUT = {"finetuned": ROOT / "data" / "ground_truth" / "offline_vqa.json",
          "head": ROOT / "data" / "ground_truth" / "offline_vqa_head.json"}
PARTIAL = {mode: ROOT / "data" / "ground_truth" / "partial" / f"offline_vqa.{mode}.partial.json" for mode in OUTPUT}
_SET = ("2000 seeded train questions, 80/20 fit/validation, lr chosen on validation; 1000 held-out test questions; "
        "images at 70 x 70 px for extraction and training alike. easy-VQA is a published synthetic VQA set (PyPI "
        "easy-vqa 1.0); the subset and the candidates are ours, not a published benchmark.")
ABOUT = {"finetuned": "Measured here: answer accuracy (percent) after fine-tuning each candidate's image backbone "
                      "and an answer head end to end (question embedding frozen); " + _SET,
         "head": "Measured here (a cheap yardstick, not the fine-tuned table): answer accuracy (percent) of an "
                 "answer head trained on each candidate's frozen image feature and frozen question embedding; " + _SET}

if __name__ == "__main__":
    raise SystemExit(ground_truth_main(vqa, __doc__.splitlines()[0], group="offline_vqa", measure="accuracy",
                                       unit="percent", about=ABOUT, candidates=CANDIDATES, dataset=DATASET,
                                       cache_dir=CACHE_DIR, output=OUTPUT, partial=PARTIAL))
