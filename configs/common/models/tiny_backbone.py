# The backbone of every tiny model (tiny_rcnn.py, tiny_dense.py): ResNet-18 with BN from scratch
# (FrozenBN from scratch diverges) under a 64-channel FPN.
CHANNELS = 64
R18_RES5_CHANNELS = 512


def shrink_backbone(backbone):
    """Turn the LazyCall FPN over ResNet-50 of a full model into the tiny one, in place."""
    bottom_up = backbone.bottom_up
    bottom_up.freeze_at = 0
    bottom_up.stem.norm = "BN"
    bottom_up.stages.update(depth=18, norm="BN")
    bottom_up.stages.pop("stride_in_1x1")
    backbone.out_channels = CHANNELS
