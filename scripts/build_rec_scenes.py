"""Compose the offline REC scenes (tasks/rec_scenes.py recipe, seeded) and record their fingerprints.

The scenes are regenerated from the packaged images whenever the dataset is loaded
(``data.get_dataset("rec_scenes", split)``); this script records the fingerprint of each default
split in data/built/rec_scenes.json (the loader refuses scenes that no longer match) and writes a
preview PNG. These scenes are built here from real images, NOT a published benchmark.

    python scripts/build_rec_scenes.py
    python scripts/build_rec_scenes.py --preview /tmp/rec_preview.png
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from data.cache import atomic_save_json  # noqa: E402
from tasks.rec_data import BUILT_FINGERPRINTS, _SCENE_DEFAULTS, scene_config_key  # noqa: E402
from tasks.rec_scenes import build_scenes  # noqa: E402

SPLITS = dict(_SCENE_DEFAULTS)       # split -> number of scenes
RANDOM_STATE = 0
PER_SCENE = 2
PREVIEW = None                       # e.g. "rec_preview.png": the first 8 train scenes with their boxes

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--random-state", type=int, default=RANDOM_STATE)
    p.add_argument("--per-scene", type=int, default=PER_SCENE)
    p.add_argument("--output", type=Path, default=BUILT_FINGERPRINTS)
    p.add_argument("--preview", type=Path, default=PREVIEW)
    a = p.parse_args()
    from tasks.rec_data import build_rec_scenes
    doc = json.loads(a.output.read_text()) if a.output.is_file() else {}
    prints = dict(doc.get("fingerprints", {}))
    a.output.unlink(missing_ok=True) if a.output == BUILT_FINGERPRINTS else None   # regenerate unchecked
    for split, n in SPLITS.items():
        ds = build_rec_scenes(None, split, n_scenes=n, random_state=a.random_state, per_scene=a.per_scene)
        prints[scene_config_key(split, n, a.random_state, a.per_scene)] = ds.fingerprint
        print(f"{split}: {n} scenes, {len(ds)} expressions, fingerprint {ds.fingerprint[:16]}")
    atomic_save_json(a.output, {"about": "fingerprints of the REC scenes composed by tasks/rec_scenes.py "
                                         "(built here from MNIST / Fashion-MNIST / easy-VQA images; not a "
                                         "published benchmark)", "fingerprints": prints})
    print(f"wrote {a.output}")
    if a.preview is not None:
        from PIL import Image, ImageDraw
        s = build_scenes("train", 8, random_state=a.random_state, per_scene=a.per_scene)
        tiles = []
        for k, im in enumerate(s.images):
            tile = Image.fromarray(im).resize((224, 224), Image.NEAREST)
            draw = ImageDraw.Draw(tile)
            for i in np.flatnonzero(s.scene_index == k):
                draw.rectangle([float(v) * 2 for v in s.boxes[i]], outline=(255, 0, 0))
                draw.text((2 * float(s.boxes[i][0]), 2 * float(s.boxes[i][1]) - 10), s.expressions[i], fill=(255, 255, 0))
            tiles.append(np.asarray(tile))
        Image.fromarray(np.concatenate(tiles, axis=1)).save(a.preview)
        print(f"wrote {a.preview}")
