"""Build the WordNet QA set (TQA offline benchmark) and write it as SQuAD 1.1 JSON files.

    python scripts/build_tqa_wordnet.py                        # cache/tqa/wordnet_qa_{train,test}.json
    python scripts/build_tqa_wordnet.py --n-train 200 --n-test 50 --out-dir /tmp/wnqa

The questions are BUILT HERE from WordNet 3.0 noun glosses (real text; Debian wordnet-base), by the
seeded recipe in tasks/_tqa_data.py; they are not a published benchmark. The pipelines rebuild the
set in memory (tasks.tqa, dataset ``wordnet_qa``); these files are for inspection and for the SQuAD
loaders (``tasks._tqa_data.read_squad_json``). The printed sha256 identifies the set (it is stored
in data/ground_truth/offline_tqa.json as protocol.data_sha256 for the default recipe and the
fine-tuning subset).
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks._tqa_data import WORDNET_QA_RECIPE, qa_fingerprint, wordnet_qa, write_squad_json  # noqa: E402

OUT_DIR = ROOT / "cache" / "tqa"
WORDNET_DIR = None                      # None: $WORDNET_DIR or /usr/share/wordnet

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key, value in WORDNET_QA_RECIPE.items():
        p.add_argument("--" + key.replace("_", "-"), type=type(value), default=value)
    p.add_argument("--wordnet-dir", default=WORDNET_DIR)
    p.add_argument("--out-dir", type=Path, default=OUT_DIR)
    a = p.parse_args()
    recipe = {k: getattr(a, k) for k in WORDNET_QA_RECIPE}
    train, test = wordnet_qa(a.wordnet_dir, **recipe)
    for split, examples in (("train", train), ("test", test)):
        path = write_squad_json(examples, a.out_dir / f"wordnet_qa_{split}.json", version="1.1",
                                recipe=recipe, built_here="from WordNet 3.0 glosses; not a published benchmark",
                                sha256=qa_fingerprint(examples))
        print(f"{split}: {len(examples)} questions -> {path} (sha256 {qa_fingerprint(examples)[:16]})")
