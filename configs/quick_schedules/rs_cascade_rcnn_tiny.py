# RS-Cascade R-CNN, tiny (ResNet-18 BN, 64-channel FPN) on the generated shapes dataset, CPU.
from rs_detectron2.solver import optimizer_with_gradient_clipping

from ..common.models.tiny_rcnn import rs_cascade_rcnn as model
from ..common.tiny import dataloader, lr_multiplier, optimizer, train

dataloader.train.mapper.use_instance_mask = False
train.output_dir = "./output/rs_cascade_rcnn_tiny"

# Deviation from the paper's recipe, for this tiny from-scratch CPU config only: the gradients are
# clipped to a global L2 norm of MAX_GRAD_NORM before each SGD step (the COCO configs do not clip).
# Why: at initialisation the only positives of stages 2 and 3 are near-exact copies of the GT boxes
# (their GIoU loss is ~0.02), so the self-balancing weight (rank + sort) / GIoU is ~9 / 48 / 56 for
# the three stages and the regression layers of stages 2-3 get gradient norms of ~270 (RS-Faster:
# ~30; total norm at iteration 0: 180-320). The from-scratch RoI features are still nearly identical,
# so one step shifts every box by the same offset; stage 3 then has no positives, momentum drives
# its deltas to hundreds, and by iteration ~32 every final box is off the image (COCO AP NaN).
# Lower LR (0.001), a longer warmup and the Detectron2 cascade box weights did not help.
# With clipping at 10 (40 iterations, seed 0) the total norm settles at 20-33, every stage keeps
# positives (final stage 12-25 per batch), the deltas stay below 2, the IoU of the boxes entering
# the last stage rises from ~0.77 (iteration 10) to ~0.84 (iteration 39) and the loss falls from
# 6.6 to 4-5. The 40-iteration run of tests/test_train_e2e.py then gives bbox AP 12.5 (seed 0)
# and 10.5 (seed 1) instead of NaN. The self-balancing, stage weights and all else are unchanged.
# A looser 35 (mmdet's SOLOv2 value) was not enough: stage 3 kept a constant offset (deltas ~6,
# its positives' IoU 0.83 -> 0.15 after regression, iterations 4-18).
MAX_GRAD_NORM = 10.0
optimizer._target_ = optimizer_with_gradient_clipping
optimizer.max_norm = MAX_GRAD_NORM
