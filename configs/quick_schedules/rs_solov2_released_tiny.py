# RS-SOLOv2, tiny, with the authors' released pairing of Dice qualities and mask-loss weights
# (RSSOLOv2(pairing="released")); otherwise rs_solov2_tiny.py.
from .rs_solov2_tiny import dataloader, lr_multiplier, model, optimizer, train

model.pairing = "released"
train.output_dir = "./output/rs_solov2_released_tiny"
