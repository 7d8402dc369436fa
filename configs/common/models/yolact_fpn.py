# YOLACT R-50-FPN at 550 x 550, the baseline of RS-YOLACT, as the RS authors' mmdet config builds
# it: torchvision-style ResNet-50 (stride in the 3x3) with trainable per-GPU BN, nothing frozen;
# FPN P3-P7 with bilinear top-down resizing, P6 from C5 and P7 from P6 without a ReLU; 3 anchors
# per location (one size, ratios 0.5 / 1 / 2; 24-384 px) at the strides 550 / [69, 35, 18, 9, 5];
# a shared head with 32 tanh mask coefficients; the protonet on P3. Stock losses: softmax + OHEM
# 3:1, smooth-L1 x1.5, mask BCE x6.125 (100 masks per image), semantic-segmentation loss on P3.
from torch import nn

from detectron2.config import LazyCall as L
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.modeling.box_regression import Box2BoxTransform

from rs_detectron2.modeling.assigners import IoUAssigner
from rs_detectron2.modeling.backbone import LastLevelP6P7NoReLU
from rs_detectron2.modeling.yolact import (
    YOLACT,
    YOLACTFPN,
    ProtoNet,
    YOLACTHead,
    pyramid_strides,
)

IMAGE_SIZE = 550

model = L(YOLACT)(
    backbone=L(YOLACTFPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="BN"),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=False, norm="BN"),
            out_features=["res3", "res4", "res5"],
            freeze_at=0,
        ),
        in_features=["res3", "res4", "res5"],
        out_channels=256,
        top_block=L(LastLevelP6P7NoReLU)(
            in_channels=2048, out_channels="${..out_channels}", in_feature="res5"
        ),
    ),
    head=L(YOLACTHead)(
        in_channels=256,
        num_classes="${..num_classes}",
        num_anchors=3,
        num_protos=32,
        conv_dim=256,
        background=True,
    ),
    protonet=L(ProtoNet)(in_channels=256, conv_dim=256, num_protos=32),
    semantic_head=L(nn.Conv2d)(in_channels=256, out_channels="${..num_classes}", kernel_size=1),
    anchor_generator=L(DefaultAnchorGenerator)(
        sizes=[[3 * s] for s in (8, 16, 32, 64, 128)],
        aspect_ratios=[0.5, 1.0, 2.0],
        strides=pyramid_strides(IMAGE_SIZE),
        offset=0.5,
    ),
    box2box_transform=L(Box2BoxTransform)(weights=(10.0, 10.0, 5.0, 5.0)),
    assigner=L(IoUAssigner)(
        thresholds=[0.4, 0.5], labels=[0, -1, 1], allow_low_quality_matches=True
    ),
    num_classes=80,
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    neg_pos_ratio=3.0,
    box_loss_weight=1.5,
    mask_loss_weight=6.125,
    semantic_loss_weight=1.0,
    max_masks_per_image=100,
    test_score_thresh=0.05,
    test_nms_thresh=0.5,
    test_topk_candidates=1000,
    test_topk_per_class=200,
    max_detections_per_image=100,
    # RGB, the torchvision ImageNet statistics (as the authors' config)
    pixel_mean=[123.68, 116.78, 103.94],
    pixel_std=[58.40, 57.12, 57.38],
    input_format="RGB",
)
