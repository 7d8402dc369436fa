#!/usr/bin/env python
"""Train and evaluate rs_detectron2 models from LazyConfig files, with Detectron2's usual flags.

    python train_net.py --config-file configs/COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py
    python train_net.py --config-file CFG --num-gpus 8 dataloader.train.total_batch_size=16
    python train_net.py --config-file CFG --eval-only train.init_checkpoint=output/model_final.pth
    python train_net.py --config-file CFG --eval-only --lrp-thresholds-out thresholds.json \
        train.init_checkpoint=output/model_final.pth   # also oLRP and per-class thresholds
    python train_net.py --config-file CFG --resume            # continue from the last checkpoint

Anything after the flags is a ``key=value`` override of the config. The checks before iteration 0,
the exit statuses, the non-finite stop and exact resume: docs/getting_started.md.
"""

import logging
import sys

# isort: off
import rs_detectron2  # noqa: F401  first: it quiets torch's and setuptools' import-time notices
# isort: on

import torch.distributed as dist

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_setup, hooks, launch
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from rs_detectron2.data import register_user_datasets
from rs_detectron2.engine import (
    AtomicCheckpointer,
    ClipGradNorm,
    FiniteLossGuard,
    ModelInfoMismatch,
    NonFiniteLossError,
    ReseedEveryPeriod,
    ResumeMismatchError,
    default_argument_parser,
    default_writers,
    evaluation_config,
    existing_checkpoint,
    iteration_seed,
    load_eval_weights,
    model_info_from_config,
    prepare_run,
    resolve_epoch_schedule,
    start_train_loader_at,
    wrap_ddp,
)
from rs_detectron2.evaluation import evaluate_and_fit_thresholds

logger = logging.getLogger("rs_detectron2")


def do_test(cfg, model, args=None):
    """Evaluate ``model`` on ``cfg.dataloader.test`` with ``cfg.dataloader.evaluator``; with
    ``--lrp-thresholds-out``, also box oLRP in the same pass, and write each class's LRP-optimal
    score threshold to that file (:mod:`rs_detectron2.evaluation.thresholds`)."""
    evaluators = [instantiate(cfg.dataloader.evaluator)] if "evaluator" in cfg.dataloader else []
    if args is None or not args.lrp_thresholds_out:
        if not evaluators:
            return {}
        results = inference_on_dataset(model, instantiate(cfg.dataloader.test), evaluators[0])
        print_csv_format(results)
        return results
    dataset = cfg.dataloader.test.dataset.names
    if not isinstance(dataset, str):
        raise SystemExit(
            f"--lrp-thresholds-out evaluates one dataset; dataloader.test.dataset.names is "
            f"{dataset}. Set it to a single name."
        )
    source = {
        "evaluation": "train_net.py --eval-only: box oLRP, IoU 0.5, 100 detections per image",
        "dataset": dataset,
        "weights": cfg.train.init_checkpoint,
        "config": args.config_file,
        "overrides": " ".join(args.opts),
    }
    loader = instantiate(cfg.dataloader.test)
    try:
        results = evaluate_and_fit_thresholds(
            model,
            loader,
            evaluators,
            dataset,
            args.lrp_thresholds_out,
            source,
            cfg.train.output_dir,
        )
    except ValueError as e:
        raise SystemExit(f"--lrp-thresholds-out: {e}") from e
    if comm.is_main_process():
        logger.info(f"Per-class LRP-optimal score thresholds written to {args.lrp_thresholds_out}")
    return results


def do_train(args, cfg):
    """Build model, optimiser, data and hooks from ``cfg`` and run the training loop.

    The loop stops with :class:`NonFiniteLossError` at the first non-finite loss, before the step
    (the checkpoints written so far stay good). With ``--resume`` the data stream and, when
    ``train.seed >= 0``, the random state continue where the checkpoint left them.
    """
    model = instantiate(cfg.model)
    logger.info(f"Model:\n{model}")
    # saved with every checkpoint: predict, export and --eval-only use the model as trained
    info = model_info_from_config(cfg, model, args.config_file)
    # an epoch-counted schedule (the LVIS configs') becomes max_iter and LR steps once the
    # training set's repeated size is known (this replaces the dataset node by the loaded set)
    resolve_epoch_schedule(cfg)
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)

    model = wrap_ddp(model, cfg)
    trainer_cls = AMPTrainer if cfg.train.amp.enabled else SimpleTrainer
    seed = cfg.train.get("seed", -1)
    # The data loader is attached once the start iteration is known (after resume_or_load).
    trainer = trainer_cls(FiniteLossGuard(model), None, optimizer)
    checkpointer = AtomicCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    checkpointer.model_info = info
    clip = cfg.train.get("clip_gradients") or {}
    writers = default_writers(
        cfg.train.output_dir, cfg.train.max_iter, cfg.train.get("log_window", 20)
    )
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
            hooks.PeriodicWriter(writers, period=cfg.train.log_period)
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


def main(args):
    register_user_datasets(args.dataset)
    if args.eval_only:
        try:  # what the weights were trained for, and a test set with their classes
            cfg = evaluation_config(args.config_file, args.opts)
        except (ModelInfoMismatch, FileNotFoundError) as e:
            print(f"train_net.py: error: --eval-only: {e}", file=sys.stderr)
            raise SystemExit(2) from e
    else:
        cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="rs_detectron2")

    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = wrap_ddp(model, cfg)
        load_eval_weights(model, cfg, args)
        return do_test(cfg, model, args)
    try:
        do_train(args, cfg)
    except ResumeMismatchError as e:
        raise SystemExit(f"train_net.py: error: --resume: {e}") from e
    except NonFiniteLossError as e:
        last = existing_checkpoint(cfg.train.output_dir)
        raise SystemExit(
            f"{e}\nLast good checkpoint: {last or 'none written yet'}. Lower the learning rate or "
            "check the data, then continue with --resume."
        ) from e


def run_process(args):
    """One process's run: :func:`main`, then, when it ended normally, the process group closed.

    A Gloo group still open at interpreter exit can abort the process (SIGABRT, "terminate called
    without an active exception") after its work is done; after an error it is left as it is, as
    closing it could wait on processes that are no longer there.
    """
    result = main(args)
    if comm.get_world_size() > 1:
        comm.synchronize()
        dist.destroy_process_group()
    return result


def invoke_main() -> None:
    # the start-up checks run once, here, before the training processes are launched
    # options may follow the KEY=VALUE overrides (the parser parses them intermixed)
    args = prepare_run(default_argument_parser().parse_args())
    launch(
        run_process,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()
