#!/usr/bin/env python
"""Generate the synthetic rs_shapes dataset (COCO + LVIS json, PNG images).

    python datasets/make_shapes.py [--root DIR] [--num-train N] [--num-val N] [--seed S]
                                   [--size H W] [--overwrite]

Default root: $DETECTRON2_DATASETS/rs_shapes (DETECTRON2_DATASETS defaults to "datasets").
Does nothing if an identical dataset is already there. See rs_detectron2/data/shapes/.
"""

import argparse
import os
import sys

try:
    import rs_detectron2  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rs_detectron2.data.shapes import (  # noqa: E402
    SHAPES_DEFAULTS,
    generate_shapes,
    shapes_class_frequencies,
    shapes_root,
)

_SHOWN = ("train_images", "val_images", "coco_train", "coco_val", "lvis_train", "lvis_val")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--root", default=None, help=f"output folder (default: {shapes_root()})")
    parser.add_argument("--num-train", type=int, default=SHAPES_DEFAULTS.num_train)
    parser.add_argument("--num-val", type=int, default=SHAPES_DEFAULTS.num_val)
    parser.add_argument("--seed", type=int, default=SHAPES_DEFAULTS.seed)
    parser.add_argument(
        "--size", type=int, nargs=2, metavar=("H", "W"), default=list(SHAPES_DEFAULTS.image_size)
    )
    parser.add_argument("--overwrite", action="store_true", help="regenerate even if up to date")
    args = parser.parse_args(argv)

    paths = generate_shapes(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=tuple(args.size),
        seed=args.seed,
        overwrite=args.overwrite,
    )
    if paths["status"] == "up-to-date":
        print(f"up to date, nothing written: {paths['root']}")
    else:
        print(f"wrote {args.num_train} train and {args.num_val} val images under {paths['root']}")
    for key in (*_SHOWN, "manifest"):
        print(f"  {key:<12} {paths[key]}")
    freqs = shapes_class_frequencies(paths["root"])
    print("  frequency    " + ", ".join(f"{name}:{group}" for name, group in freqs.items()))


if __name__ == "__main__":
    main()
