"""What a LazyConfig training command needs besides its training loop, as Detectron2's
``engine/defaults.py`` holds it for Detectron2's tools: the argument parser (Detectron2's flags and
this package's), the start of a run (:func:`prepare_run`: config, datasets, start-up checks, the
output folder), loading the weights to evaluate, DistributedDataParallel that also runs CPU
processes, and Detectron2's event writers with the configured smoothing window. ``train_net.py`` is
built from these.

:func:`prepare_run` and :func:`load_eval_weights` end the command on failure, as a command line
does: the message on stderr and exit status 2 (the command line or the config cannot work) or 1 (the
data or the weights cannot be used).
"""

import argparse
import os
import sys
from typing import List, Optional

import torch

from detectron2.engine import create_ddp_model
from detectron2.engine import default_argument_parser as d2_default_argument_parser
from detectron2.engine import default_writers as d2_default_writers
from detectron2.utils.events import EventWriter

from ..data import UserDatasetError, add_dataset_argument, register_user_datasets
from .checkpoint import load_weights, move_run_aside
from .model_info import read_model_info
from .predictor import WeightsMismatchError
from .startup_checks import (
    ConfigError,
    DataError,
    StartError,
    check_device,
    check_eval_weights,
    check_output_dir,
    check_training_data,
    load_checked_config,
    ranking_pool_warning,
)

__all__ = [
    "IMAGE_SAMPLE",
    "CommandLineParser",
    "default_argument_parser",
    "default_writers",
    "load_eval_weights",
    "prepare_run",
    "start_up_checks",
    "wrap_ddp",
]

# Images decoded per training dataset by the start-up data check with --check-images sample.
IMAGE_SAMPLE = 100


class CommandLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose :meth:`parse_args` takes options anywhere on the line, also
    after ``KEY=VALUE`` overrides (``... train.max_iter=10 --dataset NAME:JSON:ROOT``): argparse's
    intermixed parsing. The positional overrides take ``nargs="*"``."""

    def parse_args(self, args=None, namespace=None):
        return self.parse_intermixed_args(args, namespace)


def _epilog(prog: str) -> str:
    return f"""
Overrides are KEY=VALUE items of the LazyConfig (Detectron2's Hydra syntax: 2 int, 2.0 float,
true bool, null None, [a,b] list); options may come before or after them.

Examples:
  {prog} --config-file configs/COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py --num-gpus 8
  {prog} --config-file CFG --dataset mine:ann.json:images/ \\
      dataloader.train.dataset.names=mine model.roi_heads.num_classes=4
  {prog} --config-file CFG --eval-only train.init_checkpoint=OUTPUT_DIR/model_final.pth
  {prog} --config-file CFG --resume     # continue the run in train.output_dir

Exit status: 0 done, 2 the command line or the config cannot work, 1 the data or the weights
cannot be used (or training stopped on a non-finite loss). More: docs/getting_started.md.
"""


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """Detectron2's ``default_argument_parser`` (``--config-file``, ``--resume``,
    ``--eval-only``, ``--num-gpus``, ... and ``KEY=VALUE`` overrides) with the flags of
    rs_detectron2's training: ``--overwrite``, ``--skip-checks``, ``--check-images``,
    ``--allow-partial-weights``, ``--lrp-thresholds-out`` and ``--dataset`` (repeatable).

    The parser is a :class:`CommandLineParser` (options may follow the overrides), and its help
    shows LazyConfig examples (``epilog`` replaces them)."""
    prog = os.path.basename(sys.argv[0]) or "train_net.py"
    d2_parser = d2_default_argument_parser(epilog or _epilog(prog))
    parser = CommandLineParser(
        parents=[d2_parser],
        add_help=False,
        epilog=d2_parser.epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for action in parser._actions:
        if action.dest == "opts":
            action.nargs = "*"
            action.metavar = "KEY=VALUE"
            action.help = "config overrides, e.g. train.max_iter=1000 (see below)"
        elif action.dest == "resume":
            action.help = (
                "continue the run in train.output_dir from its last checkpoint (model, optimiser, "
                "schedule, iteration and data stream); the checkpoint must be of this config"
            )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run even if train.output_dir holds an earlier one; that folder is first "
        "renamed to OUTPUT_DIR.old-<time>",
    )
    parser.add_argument(
        "--skip-checks",
        action="store_true",
        help="skip the start-up checks of the overrides, class counts, masks and data",
    )
    parser.add_argument(
        "--check-images",
        choices=("none", "sample", "all"),
        default="sample",
        help=f"images the start-up data check opens and decodes: none, a sample of {IMAGE_SAMPLE} "
        "per training dataset (default), or all",
    )
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="with --eval-only, evaluate even if the checkpoint's keys do not match the model",
    )
    parser.add_argument(
        "--lrp-thresholds-out",
        default=None,
        metavar="FILE",
        help="with --eval-only, also run the oLRP evaluator and write each class's LRP-optimal "
        "score threshold to FILE (JSON), for predict --lrp-thresholds FILE",
    )
    add_dataset_argument(parser)
    return parser


def start_up_checks(cfg, args, prog: str = "train_net.py") -> List[str]:
    """The start-up checks (:mod:`.startup_checks`) of one start with the flags ``args`` of
    :func:`default_argument_parser`: with ``--eval-only`` that there are weights, else the
    ranking-pool warning and, unless ``--skip-checks``, the checks of the training data. Warnings
    and the data check's report go to stderr.

    Returns:
        Overrides to add to ``args.opts`` (the mask format RLE masks need).
    Raises:
        ConfigError, DataError: see :mod:`.startup_checks`.
    """
    if args.eval_only:
        check_eval_weights(cfg.train.init_checkpoint)
        return []
    warning = ranking_pool_warning(cfg, args.num_gpus * args.num_machines)
    if warning:
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    if args.skip_checks:
        return []
    found = check_training_data(args.config_file, args.opts, args.check_images, IMAGE_SAMPLE)
    if found.report:
        print(found.report, file=sys.stderr)
    if not found.mask_override:
        return []
    print(
        f"The training data has RLE masks, which Detectron2 loads only as bitmasks: training with "
        f"{found.mask_override}",
        file=sys.stderr,
    )
    return [found.mask_override]


def _fail(prog: str, message: object, status: int) -> SystemExit:
    """Print ``message`` as argparse prints a usage error; the caller raises the returned exit."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return SystemExit(status)


def prepare_run(args, prog: str = "train_net.py"):
    """Everything one start does once, before the training processes are launched: load and check
    the config, register the ``--dataset`` datasets, run the start-up checks, move an earlier run
    aside with ``--overwrite``.

    Args:
        args: the flags of :func:`default_argument_parser`.
        prog: the command's name in its messages.
    Returns:
        ``args``, with the overrides the checks add appended to ``args.opts``.
    Raises:
        SystemExit: with the message of a failed check on stderr (status 2: the command line, the
        config or a run that cannot start as asked: the device, an earlier run's folder; 1: the
        data).
    """
    if args.lrp_thresholds_out and not args.eval_only:
        raise _fail(prog, "--lrp-thresholds-out needs --eval-only", 2)
    try:
        cfg = load_checked_config(args.config_file, args.opts, check=not args.skip_checks)
        register_user_datasets(args.dataset)
        check_device(cfg)
        check_output_dir(
            cfg.train.output_dir,
            resume=args.resume,
            overwrite=args.overwrite,
            eval_only=args.eval_only,
        )
        args.opts = list(args.opts) + start_up_checks(cfg, args, prog)
    except (StartError, ConfigError) as e:
        raise _fail(prog, e, 2) from e
    except (DataError, UserDatasetError) as e:
        raise _fail(prog, e, 1) from e
    if args.overwrite and not (args.resume or args.eval_only) and args.machine_rank == 0:
        moved = move_run_aside(cfg.train.output_dir)
        if moved:
            print(f"--overwrite: the earlier run in {cfg.train.output_dir} is now in {moved}")
    return args


def load_eval_weights(model: torch.nn.Module, cfg, args) -> None:
    """Load ``cfg.train.init_checkpoint`` into ``model`` for ``--eval-only`` (``cfg`` from
    :func:`~rs_detectron2.engine.evaluation_config`, with what the weights were trained for).

    Raises:
        SystemExit: (status 1) weights that do not match the model (missing, unexpected or
        reshaped keys), unless ``args.allow_partial_weights``.
    """
    weights = cfg.train.init_checkpoint
    problems = load_weights(model, weights)
    if problems and not args.allow_partial_weights:
        error = WeightsMismatchError(weights, problems, read_model_info(weights))
        raise SystemExit(
            f"--eval-only: {error} Pass --allow-partial-weights to evaluate anyway "
            f"(config {args.config_file})."
        )


def wrap_ddp(model: torch.nn.Module, cfg) -> torch.nn.Module:
    """Detectron2's ``create_ddp_model`` with the config's ``train.ddp`` arguments: the model
    itself in a single process, else DistributedDataParallel. On a CPU ``train.device`` no device
    is pinned (``device_ids=None``), so CPU processes (Gloo) train too."""
    ddp_args = dict(cfg.train.ddp)
    if torch.device(cfg.train.device).type == "cpu":
        ddp_args["device_ids"] = None
    return create_ddp_model(model, **ddp_args)


def default_writers(
    output_dir: str, max_iter: Optional[int] = None, window_size: int = 20
) -> List[EventWriter]:
    """Detectron2's ``default_writers`` (console, ``output_dir/metrics.json``, TensorBoard), with
    the losses smoothed as the median of the last ``window_size`` iterations (Detectron2's 20;
    1 writes each iteration's own value)."""
    writers = d2_default_writers(output_dir, max_iter)
    for writer in writers:
        # Detectron2's function takes no window; each of its three writers keeps it here.
        if not hasattr(writer, "_window_size"):
            raise TypeError(f"{type(writer).__name__} has no smoothing window to set")
        writer._window_size = window_size
    return writers
