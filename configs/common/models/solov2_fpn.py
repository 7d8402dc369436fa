# Stock SOLOv2 R-101-FPN (Wang et al., NeurIPS 2020; the authors' solov2_r101_fpn 3x recipe):
# Detectron2's FPN (P2-P6, 256 channels) over ResNet-101; instance head of 4 convs x 512 (GN) on
# grids 40/36/24/16/12 over P2 (halved), P3, P4, P5, P6 (at P5's size); 256-channel dynamic
# kernels over mask features at stride 4; focal loss on the categories, Dice x 3 on the masks;
# test: score 0.1, mask 0.5, Matrix NMS (gaussian, sigma 2) over the top 500, update 0.05, 100.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.model_zoo import get_config

from rs_detectron2.modeling.backbone import FrozenStatsBatchNorm2d
from rs_detectron2.modeling.solov2 import SOLOv2, SOLOv2InstanceHead, SOLOv2MaskFeatHead

IMAGENET = get_config("common/data/constants.py").constants

backbone = get_config("common/models/mask_rcnn_fpn.py").model.backbone
backbone.bottom_up.stages.depth = 101
backbone.bottom_up.freeze_at = 2  # stem and res2 frozen

model = L(SOLOv2)(
    backbone=backbone,
    # the head's class count and the mask features' channels follow the model's keys
    head=L(SOLOv2InstanceHead)(
        input_shape=[ShapeSpec(channels=256)] * 5,
        num_classes="${..num_classes}",
        num_grids=[40, 36, 24, 16, 12],
        num_convs=4,
        conv_dims=512,
        num_kernels=256,
        norm="GN",
        prior_prob=0.01,
    ),
    mask_head=L(SOLOv2MaskFeatHead)(
        input_shape=[ShapeSpec(channels=256)] * 4,
        conv_dims=128,
        num_kernels="${..head.num_kernels}",
        norm="GN",
    ),
    num_classes=80,
    head_in_features=["p2", "p3", "p4", "p5", "p6"],
    mask_in_features=["p2", "p3", "p4", "p5"],
    strides=[8, 8, 16, 32, 32],
    # sqrt(w * h) of the ground-truth box; the ranges overlap
    scale_ranges=[[1, 96], [48, 192], [96, 384], [192, 768], [384, 2048]],
    center_sigma=0.2,
    first_come=False,
    focal_loss_alpha=0.25,
    focal_loss_gamma=2.0,
    mask_loss_weight=3.0,
    test_score_thresh=0.1,
    test_mask_thresh=0.5,
    test_nms_pre=500,
    test_update_thresh=0.05,
    test_nms_kernel="gaussian",
    test_nms_sigma=2.0,
    max_detections_per_image=100,
    # Detectron2's MSRA ResNet input (BGR, std absorbed into the first conv)
    pixel_mean=IMAGENET.imagenet_bgr256_mean,
    pixel_std=[1.0, 1.0, 1.0],
)


def light_r34(model):
    """SOLOv2-light R-34 (the authors' light 448 recipe) from the R-101 model, in place: ResNet-34
    from torchvision's ImageNet weights as the authors ran it (RGB input with ImageNet mean / std,
    BN statistics frozen and affine trainable), an instance head of 2 convs x 256, 128-channel
    kernels and smaller scale ranges."""
    bottom_up = model.backbone.bottom_up
    bottom_up.stem.norm = FrozenStatsBatchNorm2d
    bottom_up.stages.update(depth=34, norm=FrozenStatsBatchNorm2d)
    bottom_up.stages.pop("stride_in_1x1")  # basic blocks
    model.update(pixel_mean=IMAGENET.imagenet_rgb256_mean, pixel_std=IMAGENET.imagenet_rgb256_std)
    model.head.update(num_convs=2, conv_dims=256, num_kernels=128)
    model.scale_ranges = [[1, 56], [28, 112], [56, 224], [112, 448], [224, 896]]
    return model
