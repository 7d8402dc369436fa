#!/usr/bin/env python
"""Train and evaluate rs_detectron2 models from LazyConfig files, with Detectron2's usual flags.

    python train_net.py --config-file configs/COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py
    python train_net.py --config-file CFG --num-gpus 8 dataloader.train.total_batch_size=16
    python train_net.py --config-file CFG --eval-only train.init_checkpoint=output/model_final.pth
    python train_net.py --config-file CFG --resume            # continue from the last checkpoint
    python train_net.py --config-file CFG --overwrite         # start again over an earlier run

Anything after the flags is a ``key=value`` override of the config. ``train.device`` is CUDA when
one is visible, else CPU. On CPU, ``--num-gpus N`` starts N processes with the Gloo backend.

Training stops with an error naming the iteration and the loss term at the first NaN or infinite
loss (or RS logit), before that step changes the weights. With ``train.seed`` >= 0, a run resumed
with ``--resume`` from a periodic checkpoint continues the data order and random draws exactly.
"""

import logging
import os

import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (
    AMPTrainer,
    SimpleTrainer,
    create_ddp_model,
    default_argument_parser,
    default_setup,
    hooks,
    launch,
)
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from detectron2.utils.logger import setup_logger

from rs_detectron2.data import register_shapes, register_user_datasets
from rs_detectron2.engine import (
    AtomicCheckpointer,
    FiniteLossGuard,
    NonFiniteLossError,
    ReseedEveryPeriod,
    existing_checkpoint,
    give_loader_own_generator,
    iteration_seed,
    skip_consumed_samples,
)

logger = logging.getLogger("rs_detectron2")


def do_test(cfg, model):
    """Evaluate ``model`` on ``cfg.dataloader.test`` with ``cfg.dataloader.evaluator``."""
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(
        model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    )
    print_csv_format(results)
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
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)

    model = wrap_ddp(model, cfg)
    trainer_cls = AMPTrainer if cfg.train.amp.enabled else SimpleTrainer
    seed = cfg.train.get("seed", -1)
    # The data loader is attached once the start iteration is known (after resume_or_load).
    trainer = trainer_cls(FiniteLossGuard(model), None, optimizer)
    checkpointer = AtomicCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
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
    train_loader = skip_consumed_samples(
        instantiate(cfg.dataloader.train), start_iter * images_per_process
    )
    if seed >= 0:
        give_loader_own_generator(train_loader, iteration_seed(seed, comm.get_rank(), start_iter))
    trainer.data_loader = train_loader
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


def main(args):
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    register_shapes()
    register_user_datasets(args.dataset)
    check_device(cfg)
    check_output_dir(cfg, args)
    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="rs_detectron2")

    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = wrap_ddp(model, cfg)
        AtomicCheckpointer(model).load(cfg.train.init_checkpoint)
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
        help="start a new run even if train.output_dir holds checkpoints of an earlier one",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME:JSON:IMAGE_ROOT",
        help="register a COCO- or LVIS-format annotation file as dataset NAME (repeatable); use it "
        "with dataloader.train.dataset.names=NAME / dataloader.test.dataset.names=NAME",
    )
    return parser


def invoke_main() -> None:
    args = argument_parser().parse_args()
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
