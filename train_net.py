#!/usr/bin/env python
"""Train and evaluate rs_detectron2 models from LazyConfig files, with Detectron2's usual flags.

    python train_net.py --config-file configs/COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py
    python train_net.py --config-file CFG --num-gpus 8 dataloader.train.total_batch_size=16
    python train_net.py --config-file CFG --eval-only train.init_checkpoint=output/model_final.pth
    python train_net.py --config-file CFG --eval-only --lrp-thresholds-out thresholds.json \
        train.init_checkpoint=output/model_final.pth   # also oLRP and per-class thresholds
    python train_net.py --config-file CFG --resume            # continue from the last checkpoint
    python train_net.py --config-file CFG --overwrite         # start again over an earlier run

Anything after the flags is a ``key=value`` override of the config. ``train.device`` is CUDA when
one is visible, else CPU. On CPU, ``--num-gpus N`` starts N processes with the Gloo backend.

Training stops with an error naming the iteration and the loss term at the first NaN or infinite
loss (or RS logit), before that step changes the weights. With ``train.seed`` >= 0, a run resumed
with ``--resume`` from a periodic checkpoint continues the data order and random draws exactly.

Before any model is built, every start checks (``--skip-checks`` skips these): that the override
keys exist and their values have the right type, that the training datasets are registered and
have as many classes as the model, the data itself (``--check-images`` sets how many images are
decoded), and RLE masks (the mask format then becomes ``bitmask``). Exit status 2: the command line
or config cannot work; 1: the data or the weights cannot be used. ``--eval-only`` refuses to run
without weights or with weights that do not match the model (``--allow-partial-weights``), and
``--overwrite`` renames the earlier run's folder to ``OUTPUT_DIR.old-<time>`` first.

``--eval-only --lrp-thresholds-out FILE`` runs the oLRP evaluator beside the config's evaluator (one
pass over ``dataloader.test``) and writes each class's LRP-optimal score threshold of box oLRP to
FILE (:mod:`rs_detectron2.evaluation.thresholds`), for ``python -m rs_detectron2.predict
--lrp-thresholds FILE`` and ``LazyPredictor(class_thresholds=FILE)``.
"""

import dataclasses
import logging
import os
import sys

import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.data import MetadataCatalog
from detectron2.engine import (
    AMPTrainer,
    SimpleTrainer,
    create_ddp_model,
    default_argument_parser,
    default_setup,
    hooks,
    launch,
)
from detectron2.evaluation import DatasetEvaluators, inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from detectron2.utils.logger import setup_logger

from rs_detectron2.data import (
    UserDatasetError,
    add_dataset_argument,
    config_facts,
    register_shapes,
    register_user_datasets,
)
from rs_detectron2.engine import (
    AtomicCheckpointer,
    ClipGradNorm,
    FiniteLossGuard,
    NonFiniteLossError,
    ReseedEveryPeriod,
    existing_checkpoint,
    iteration_seed,
    move_run_aside,
    resolve_epoch_schedule,
    start_train_loader_at,
)
from rs_detectron2.engine.validate import (
    ConfigError,
    DataError,
    check_class_count,
    check_data,
    check_datasets_registered,
    check_eval_weights,
    check_overrides,
    mask_format_override,
    ranking_pool_warning,
)
from rs_detectron2.evaluation import OLRPEvaluator
from rs_detectron2.evaluation.thresholds import thresholds_from_olrp, write_thresholds

logger = logging.getLogger("rs_detectron2")

# Images decoded per training dataset by the start-up check with --check-images sample.
IMAGE_SAMPLE = 100


def do_test(cfg, model):
    """Evaluate ``model`` on ``cfg.dataloader.test`` with ``cfg.dataloader.evaluator``."""
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
    print_csv_format(results)
    return results


def do_test_with_lrp_thresholds(cfg, model, args):
    """:func:`do_test` with an :class:`OLRPEvaluator` in the same pass; writes each class's
    LRP-optimal threshold of box oLRP to ``args.lrp_thresholds_out`` (main process)."""
    dataset = cfg.dataloader.test.dataset.names
    if not isinstance(dataset, str):
        raise SystemExit(
            f"--lrp-thresholds-out evaluates one dataset; dataloader.test.dataset.names is "
            f"{dataset}. Set it to a single name."
        )
    olrp = OLRPEvaluator(
        dataset, tasks=("bbox",), output_dir=cfg.train.output_dir, results_suffix="_oLRP"
    )
    evaluators = [instantiate(cfg.dataloader.evaluator)] if "evaluator" in cfg.dataloader else []
    results = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), DatasetEvaluators(evaluators + [olrp])
    )
    print_csv_format(results)
    if not comm.is_main_process():
        return results
    details = olrp.olrp_details()
    if details is None:
        raise SystemExit(f"--lrp-thresholds-out: dataset {dataset} has no annotations to evaluate")
    metadata = MetadataCatalog.get(dataset)
    id_map = metadata.get("thing_dataset_id_to_contiguous_id", None)
    source = {
        "evaluation": "train_net.py --eval-only: box oLRP, IoU 0.5, 100 detections per image",
        "dataset": dataset,
        "weights": cfg.train.init_checkpoint,
        "config": args.config_file,
        "overrides": " ".join(args.opts),
    }
    try:
        document = thresholds_from_olrp(
            details["bbox"]["per_class"],
            metadata.thing_classes,
            dataset_ids=sorted(id_map, key=id_map.get) if id_map else None,
            source=source,
        )
    except ValueError as e:
        raise SystemExit(f"--lrp-thresholds-out: {e}") from e
    write_thresholds(args.lrp_thresholds_out, document)
    logger.info(f"Per-class LRP-optimal score thresholds written to {args.lrp_thresholds_out}")
    return results


def check_device(cfg):
    """Fail early, with a message, on settings the chosen device cannot run."""
    device = torch.device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("train.device is cuda but no CUDA device is visible; use train.device=cpu")
    if cfg.train.amp.enabled and device.type != "cuda":
        raise SystemExit(
            "train.amp.enabled=True needs a CUDA device (Detectron2's AMPTrainer); "
            f"train.device is {cfg.train.device}. Drop the flag to train in float32."
        )


def wrap_ddp(model, cfg):
    """DistributedDataParallel when there are several processes (CPU processes pin no device)."""
    ddp_args = dict(cfg.train.ddp)
    if torch.device(cfg.train.device).type == "cpu":
        ddp_args["device_ids"] = None
    return create_ddp_model(model, **ddp_args)


def build_writers(cfg):
    """Console, JSON and TensorBoard writers; losses are medians over ``train.log_window``
    iterations (Detectron2's 20 unless the config sets it; 1 logs every iteration's raw value)."""
    window = cfg.train.get("log_window", 20)
    return [
        CommonMetricPrinter(cfg.train.max_iter, window_size=window),
        JSONWriter(os.path.join(cfg.train.output_dir, "metrics.json"), window_size=window),
        TensorboardXWriter(cfg.train.output_dir, window_size=window),
    ]


def do_train(args, cfg):
    """Build model, optimiser, data and hooks from ``cfg`` and run the training loop.

    The loop stops with :class:`NonFiniteLossError` at the first non-finite loss, before the step
    (the checkpoints written so far stay good). With ``--resume`` the data stream and, when
    ``train.seed >= 0``, the random state continue where the checkpoint left them.
    """
    # an epoch-counted schedule (the LVIS configs') becomes max_iter and LR steps once the
    # training set's repeated size is known
    resolve_epoch_schedule(cfg)
    model = instantiate(cfg.model)
    logger.info(f"Model:\n{model}")
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)

    model = wrap_ddp(model, cfg)
    trainer_cls = AMPTrainer if cfg.train.amp.enabled else SimpleTrainer
    seed = cfg.train.get("seed", -1)
    # The data loader is attached once the start iteration is known (after resume_or_load).
    trainer = trainer_cls(FiniteLossGuard(model), None, optimizer)
    checkpointer = AtomicCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    clip = cfg.train.get("clip_gradients") or {}
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            ClipGradNorm(clip["max_norm"], clip.get("norm_type", 2.0))
            if clip.get("max_norm") is not None
            else None,
            ReseedEveryPeriod(seed, cfg.train.checkpointer.period),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
            if comm.is_main_process()
            else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(build_writers(cfg), period=cfg.train.log_period)
            if comm.is_main_process()
            else None,
        ]
    )

    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    images_per_process = cfg.dataloader.train.total_batch_size // comm.get_world_size()
    start_train_loader_at(
        cfg.dataloader.train,
        start_iter * images_per_process,
        iteration_seed(seed, comm.get_rank(), start_iter) if seed >= 0 else None,
    )
    trainer.data_loader = instantiate(cfg.dataloader.train)
    trainer.train(start_iter, cfg.train.max_iter)


def check_output_dir(cfg, args):
    """Refuse to start a fresh run over the checkpoints of an earlier one."""
    if args.eval_only or args.resume or args.overwrite:
        return
    found = existing_checkpoint(cfg.train.output_dir)
    if found:
        raise SystemExit(
            f"{cfg.train.output_dir} already holds checkpoints (last: {found}). Pass --resume to "
            "continue that run, --overwrite to start again over it, or another train.output_dir."
        )


def load_config(args):
    """The config of ``args.config_file`` with the ``KEY=VALUE`` overrides of ``args.opts``;
    unless ``args.skip_checks``, the overrides are checked first (:func:`check_overrides`)."""
    cfg = LazyConfig.load(args.config_file)
    if not args.skip_checks:
        check_overrides(cfg, args.opts)
    return LazyConfig.apply_overrides(cfg, args.opts)


def start_up_checks(cfg, args):
    """The checks of one start, run once before the training processes are launched.

    Returns:
        Overrides to add to ``args.opts`` (the mask format RLE masks need).
    Raises:
        ConfigError, DataError: see :mod:`rs_detectron2.engine.validate`.
    """
    if args.eval_only:
        check_eval_weights(cfg.train.init_checkpoint)
        return []
    warning = ranking_pool_warning(cfg, args.num_gpus * args.num_machines)
    if warning:
        print(f"train_net.py: warning: {warning}", file=sys.stderr)
    if args.skip_checks:
        return []
    facts = config_facts(args.config_file, args.opts)
    check_datasets_registered(facts.train_names)
    check_class_count(facts)
    fix = mask_format_override(facts)
    if fix:
        facts = dataclasses.replace(facts, mask_format="bitmask")
    report = check_data(facts, args.check_images, IMAGE_SAMPLE)
    if report:
        print(report, file=sys.stderr)
    if not fix:
        return []
    print(
        f"The training data has RLE masks, which Detectron2 loads only as bitmasks: training with "
        f"{fix}",
        file=sys.stderr,
    )
    return [fix]


def load_weights_for_eval(model, args, cfg):
    """Load ``train.init_checkpoint``; unless ``--allow-partial-weights``, weights that do not
    match the model (missing, unexpected or reshaped keys) stop the run."""
    checkpointer = AtomicCheckpointer(model)
    checkpointer.load(cfg.train.init_checkpoint)
    problems = checkpointer.incompatible_keys()
    if problems and not args.allow_partial_weights:
        details = "\n  ".join(problems)
        raise SystemExit(
            f"--eval-only: {cfg.train.init_checkpoint} does not match the model of "
            f"{args.config_file}:\n  {details}\nIs it a checkpoint of this config? Pass "
            "--allow-partial-weights to evaluate anyway."
        )


def main(args):
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    register_shapes()
    register_user_datasets(args.dataset)
    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="rs_detectron2")

    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = wrap_ddp(model, cfg)
        load_weights_for_eval(model, args, cfg)
        if args.lrp_thresholds_out:
            return do_test_with_lrp_thresholds(cfg, model, args)
        return do_test(cfg, model)
    try:
        do_train(args, cfg)
    except NonFiniteLossError as e:
        last = existing_checkpoint(cfg.train.output_dir)
        raise SystemExit(
            f"{e}\nLast good checkpoint: {last or 'none written yet'}. Lower the learning rate or "
            "check the data, then continue with --resume."
        ) from e


def argument_parser():
    parser = default_argument_parser()
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


def prepare(args):
    """Everything one start does once, before the training processes are launched: load and check
    the config, register the datasets, run the start-up checks, move an earlier run aside.

    Returns:
        ``args``, with the overrides the checks add appended to ``args.opts``.
    Raises:
        SystemExit: with the message of a failed check (status 2: command line or config; 1: data).
    """
    if args.lrp_thresholds_out and not args.eval_only:
        print("train_net.py: error: --lrp-thresholds-out needs --eval-only", file=sys.stderr)
        raise SystemExit(2)
    try:
        cfg = load_config(args)
        register_shapes()
        register_user_datasets(args.dataset)
        check_device(cfg)
        check_output_dir(cfg, args)
        args.opts = list(args.opts) + start_up_checks(cfg, args)
    except ConfigError as e:
        print(f"train_net.py: error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    except (DataError, UserDatasetError) as e:
        print(f"train_net.py: error: {e}", file=sys.stderr)
        raise SystemExit(1) from e
    if args.overwrite and not (args.resume or args.eval_only) and args.machine_rank == 0:
        moved = move_run_aside(cfg.train.output_dir)
        if moved:
            print(f"--overwrite: the earlier run in {cfg.train.output_dir} is now in {moved}")
    return args


def invoke_main() -> None:
    args = prepare(argument_parser().parse_args())
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()
