#!/usr/bin/env python
"""Train and evaluate rs_detectron2 models from LazyConfig files, with Detectron2's usual flags.

    python train_net.py --config-file configs/COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py
    python train_net.py --config-file CFG --num-gpus 8 dataloader.train.total_batch_size=16
    python train_net.py --config-file CFG --eval-only train.init_checkpoint=output/model_final.pth
    python train_net.py --config-file CFG --resume            # continue from the last checkpoint
    python train_net.py --config-file CFG --overwrite         # start again over an earlier run

Anything after the flags is a ``key=value`` override of the config. ``train.device`` is CUDA when
one is visible, else CPU. On CPU, ``--num-gpus N`` starts N processes with the Gloo backend.
"""

import logging

import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (
    AMPTrainer,
    SimpleTrainer,
    create_ddp_model,
    default_argument_parser,
    default_setup,
    default_writers,
    hooks,
    launch,
)
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from rs_detectron2.data import register_shapes
from rs_detectron2.engine import AtomicCheckpointer, existing_checkpoint

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


def do_train(args, cfg):
    """Build model, optimiser, data and hooks from ``cfg`` and run the training loop."""
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = wrap_ddp(model, cfg)
    trainer_cls = AMPTrainer if cfg.train.amp.enabled else SimpleTrainer
    trainer = trainer_cls(model, train_loader, optimizer)
    checkpointer = AtomicCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
            if comm.is_main_process()
            else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter),
                period=cfg.train.log_period,
            )
            if comm.is_main_process()
            else None,
        ]
    )

    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
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
    check_device(cfg)
    check_output_dir(cfg, args)
    default_setup(cfg, args)

    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = wrap_ddp(model, cfg)
        AtomicCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    do_train(args, cfg)


def argument_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run even if train.output_dir holds checkpoints of an earlier one",
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
