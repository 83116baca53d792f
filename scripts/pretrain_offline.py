"""Pre-train the small offline networks (group ``offline_trained``) on offline source datasets.

Seeded, resumable per network (a network whose weights + provenance match its recipe is skipped),
atomic writes. Output: ``models/weights_offline/{name}.pt`` + ``PROVENANCE.json`` (committed, so a
fresh clone does not retrain). Designed for 1 CPU thread::

    OMP_NUM_THREADS=1 nice -n 10 python scripts/pretrain_offline.py            # all, skip current ones
    python scripts/pretrain_offline.py --networks fmnist_resnet_e4 --force     # retrain one

Recipe design: sources disjoint from the benchmark targets they serve (each network is used only on
targets outside its sources' task domain, see models/offline_trained.py); different architectures,
sources and budgets so that transfer quality differs.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from finetuning.pretrain import PretrainRecipe, run_pretraining  # noqa: E402
from models.offline_trained import WEIGHTS_DIR  # noqa: E402

THREADS = 1
R = PretrainRecipe
RECIPES = (
    # Fashion-MNIST sources (for mnist / digits / textures targets)
    R("fmnist_resnet_e4", "resnet", ("fashion_mnist",), 28, epochs=4, arch_kwargs={"width": 16}, n_per_class=1000),
    R("fmnist_resnet_e1", "resnet", ("fashion_mnist",), 28, epochs=1, arch_kwargs={"width": 16}, n_per_class=300),
    R("fmnist_vgg_e5", "vgg", ("fashion_mnist",), 28, epochs=5, arch_kwargs={"width": 16}, n_per_class=2000),
    R("fmnist_mixer_e5", "mixer", ("fashion_mnist",), 28, epochs=5,
      arch_kwargs={"width": 64, "depth": 4, "patch": 4}, n_per_class=2000),
    # MNIST sources (for fashion_mnist / textures targets; not digits: same domain)
    R("mnist_mobilenet_e6", "mobilenet", ("mnist",), 28, epochs=6, arch_kwargs={"width": 12}),
    R("mnist_mlp_e20", "mlp", ("mnist",), 28, epochs=20, arch_kwargs={"width": 256}, lr=1e-3),
    # sklearn digits (for fashion_mnist / textures)
    R("digits_resnet_e15", "resnet", ("digits",), 16, epochs=15, arch_kwargs={"width": 16}, batch_size=64),
    # easy-VQA scenes (for every grayscale / texture target)
    R("shapes_resnet_e8", "resnet", ("easyvqa_shapes",), 32, epochs=8, arch_kwargs={"width": 16}),
    R("colors_vgg_e6", "vgg", ("easyvqa_colors",), 32, epochs=6, arch_kwargs={"width": 16}),
    # texture patches (for fashion_mnist / mnist / digits)
    R("textures_vgg_e30", "vgg", ("textures",), 32, epochs=30, arch_kwargs={"width": 16}, batch_size=64),
    # a mixture: clothing + shapes (for mnist / digits / textures)
    R("mix_fmnist_shapes_mixer_e5", "mixer", ("fashion_mnist", "easyvqa_shapes"), 32, epochs=5,
      arch_kwargs={"width": 64, "depth": 4, "patch": 4}, n_per_class=500),
)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--networks", nargs="+", default=None, help="train only these recipes (default: all)")
    p.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="output folder (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="retrain even when weights + provenance are current")
    p.add_argument("--threads", type=int, default=THREADS, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--list", action="store_true", help="print the recipes and exit")
    args = p.parse_args(argv)
    if args.list:
        for r in RECIPES:
            print(r.name, r.as_record())
        return
    torch.set_num_threads(args.threads)
    command = "python scripts/pretrain_offline.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    run_pretraining(RECIPES, args.weights_dir, only=args.networks, force=args.force, command=command.strip(),
                    progress=not args.quiet)


if __name__ == "__main__":
    main()
