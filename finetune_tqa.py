"""Fine-tuned TQA ground truth of the offline candidates: writes data/ground_truth/offline_tqa.json.

    .venv/bin/python finetune_tqa.py                        # the committed table (resumes if killed)
    .venv/bin/python finetune_tqa.py --encoder frozen       # the cheap yardstick: a span head on frozen states
    .venv/bin/python finetune_tqa.py --candidates minilm_l1 minilm_l2 --n-train 64 --epochs 1 \
        --output /tmp/t.json                                # a quick partial table

Data: the WordNet QA set built here (tasks/_tqa_data.py recipe; real WordNet 3.0 glosses, not a
published benchmark): the first N_TRAIN training questions, every test question. Each candidate
(tasks/_tqa_models.py) is its encoder + a linear span head, fine-tuned end to end
(tasks/_tqa_finetune.py); the ground truth is its test F1 (SQuAD normalisation), exact match kept
alongside. Committed table (ENCODER = "trained"): LP-FT (Kumar et al., ICLR 2022): the bilinear span
head is first trained on the frozen states (the yardstick's protocol), then the truncated encoder and
that head are fine-tuned end to end (one lr for every candidate, as SQuAD recipes do; no validation
split is held out).
Yardstick (--encoder frozen -> offline_tqa_head.json): a bilinear span head trained on the candidate
layer's frozen token states (one forward pass of the 6-layer model gives every depth). Finished
candidates are kept in data/ground_truth/partial/<output stem>.partial.json (committed) and skipped on
a re-run (--restart to start over).
"""
from __future__ import annotations

import argparse
import platform
from functools import partial as partial_fn
from pathlib import Path

import torch

from data.cache import atomic_save_json
from tasks._tqa_data import WORDNET_QA_RECIPE, qa_fingerprint, wordnet_qa
from tasks._tqa_finetune import HeadConfig, SpanFinetuneConfig, run_candidates, run_frozen_candidates
from tasks import tqa
from tasks.pipeline import probe_agreement
from tasks._tqa_models import FEATURE_DESCRIPTION, get_candidate, list_candidates

ROOT = Path(__file__).resolve().parent

CANDIDATES = list_candidates(offline=True)   # minilm_l1 ... minilm_l6
DATASET = "wordnet_qa"
ENCODER = "trained"             # "trained": encoder + span head end to end (the committed table);
                                # "frozen": span head on the frozen layer's states (the yardstick)
N_TRAIN = tqa.N_FEATURE_SAMPLES     # the questions the metrics score (forward_feature_tqa.py) are the training set
HEAD = "bilinear"               # frozen: question-conditioned span head (tasks._tqa_finetune.HeadConfig); or "linear"
EPOCHS = {"trained": 3, "frozen": 30}       # frozen: head epochs over cached states
LR = {"trained": 3e-5, "frozen": 1e-3}      # trained: LP-FT's fine-tuning lr (BERT's SQuAD recipe)
BATCH_SIZE = {"trained": 32, "frozen": 64}
MAX_LENGTH = 128                # question + 3-sentence context fit (no test answer is truncated)
MAX_ANSWER_TOKENS = 32
SEED = 0
NUM_THREADS = 1
OUTPUT = {"trained": ROOT / "data" / "ground_truth" / "offline_tqa.json",
          "frozen": ROOT / "data" / "ground_truth" / "offline_tqa_head.json"}
PARTIAL_DIR = ROOT / "data" / "ground_truth" / "partial"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", nargs="+", default=CANDIDATES)
    p.add_argument("--encoder", choices=("frozen", "trained"), default=ENCODER)
    p.add_argument("--head", choices=("bilinear", "linear"), default=HEAD)
    p.add_argument("--n-train", type=int, default=N_TRAIN)
    p.add_argument("--epochs", type=int, default=None, help=f"default per --encoder: {EPOCHS}")
    p.add_argument("--lr", type=float, default=None, help=f"default per --encoder: {LR}")
    p.add_argument("--batch-size", type=int, default=None, help=f"default per --encoder: {BATCH_SIZE}")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--num-threads", type=int, default=NUM_THREADS)
    p.add_argument("--wordnet-dir", default=None, help="default: $WORDNET_DIR or /usr/share/wordnet")
    p.add_argument("--output", type=Path, default=None, help=f"default per --encoder: {OUTPUT}")
    p.add_argument("--restart", action="store_true", help="discard the finished runs of this output")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    for key, table in (("epochs", EPOCHS), ("lr", LR), ("batch_size", BATCH_SIZE), ("output", OUTPUT)):
        if getattr(a, key) is None:
            setattr(a, key, table[a.encoder])
    return a


def write_table(path: Path, runs: dict, protocol: dict) -> None:
    group = path.stem
    atomic_save_json(path, {
        "about": ("Test F1 (percent, SQuAD normalisation) of offline text encoders, each cut after one of its "
                  "layers, with a span head trained on the WordNet QA set built here from WordNet 3.0 "
                  "glosses (not a published benchmark); see protocol.trained. Measured by finetune_tqa.py."),
        "group": group,
        "source": "measured here (finetune_tqa.py)",
        "unit": "percent",
        "dataset_measure": {DATASET: "F1"},
        "protocol": protocol,
        "model_sources": {n: get_candidate(n).description for n in runs},
        "feature": FEATURE_DESCRIPTION,
        group: {DATASET: {n: round(r["f1"], 3) for n, r in runs.items()}},
        "exact_match": {DATASET: {n: round(r["exact_match"], 3) for n, r in runs.items()}},
        "runs": {DATASET: runs},
        **({"probe_agreement": agreement} if (agreement := probe_agreement(runs, "f1")) else {}),
    })


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.num_threads)
    train, test = wordnet_qa(args.wordnet_dir)
    train = train[:args.n_train]
    if args.encoder == "frozen":
        config = HeadConfig(head=args.head, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                            max_length=args.max_length, max_answer_tokens=MAX_ANSWER_TOKENS, seed=args.seed)
        run = run_frozen_candidates
    else:
        config = SpanFinetuneConfig(lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, head=args.head,
                                    init="probe", max_length=args.max_length, max_answer_tokens=MAX_ANSWER_TOKENS,
                                    seed=args.seed)
        probe = HeadConfig(head=args.head, lr=LR["frozen"], epochs=EPOCHS["frozen"], batch_size=BATCH_SIZE["frozen"],
                           max_length=args.max_length, max_answer_tokens=MAX_ANSWER_TOKENS, seed=args.seed)
        run = partial_fn(run_candidates, probe=probe)
    partial = PARTIAL_DIR / f"{args.output.stem}.partial.json"
    if args.restart and partial.is_file():
        partial.unlink()
    fingerprint = qa_fingerprint([*train, *test])
    protocol = {**config.to_dict(), "dataset": DATASET, "recipe": WORDNET_QA_RECIPE, "n_train": len(train),
                "n_test": len(test), "data_sha256": fingerprint,
                "head": f"{args.head} span head (tasks._tqa_finetune.HeadConfig)",
                "trained": "the span head on the frozen layer's token states" if args.encoder == "frozen"
                else "LP-FT: the span head on the frozen states (protocol.probe), then encoder and head end to end",
                "torch": torch.__version__, "threads": args.num_threads,
                "machine": platform.machine()}
    if args.encoder == "trained":
        protocol["probe"] = probe.to_dict()
    runs = run(args.candidates, DATASET, train, test, config, partial, data_fingerprint=fingerprint,
               progress=not args.quiet)
    if len(runs) >= 2:
        write_table(args.output, runs, protocol)
    print(f"{len(runs)} candidate(s) finished; table: {args.output if len(runs) >= 2 else '(needs >= 2)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
