# The authors' backbone: torchvision's ImageNet ResNet-50 as mmdetection runs it in the RS paper's
# configs ("pytorch" style: stride in the 3x3 conv; RGB input normalised with ImageNet mean / std
# in 0-255 scale; BN statistics frozen, BN affine trainable; stem and res2 frozen). The MSRA configs
# use Detectron2's caffe-style R-50 with FrozenBN instead. Weights: Detectron2's conversion of
# torchvision's ImageNet R-50 (the weights behind mmdetection's torchvision://resnet50); other
# torchvision checkpoints: `python -m rs_detectron2.model_zoo.convert_torchvision` (docs/models.md).
from detectron2.model_zoo import get_config

from rs_detectron2.modeling.backbone import FrozenStatsBatchNorm2d

TORCHVISION_R50 = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
IMAGENET = get_config("common/data/constants.py").constants


def use_torchvision_r50(model, dataloader, optimizer, train):
    """Switch a config's R-50 model, data format and initial weights to torchvision's R-50."""
    bottom_up = model.backbone.bottom_up
    bottom_up.stem.norm = FrozenStatsBatchNorm2d
    bottom_up.stages.update(norm=FrozenStatsBatchNorm2d, stride_in_1x1=False)
    bottom_up.freeze_at = 2  # mmdet frozen_stages=1: the stem and the first residual stage
    model.update(
        pixel_mean=IMAGENET.imagenet_rgb256_mean,
        pixel_std=IMAGENET.imagenet_rgb256_std,
        input_format="RGB",
    )
    dataloader.train.mapper.image_format = "RGB"
    dataloader.test.mapper.image_format = "RGB"
    # mmdetection decays every parameter, the now trainable BN affine included; Detectron2's
    # optimiser default exempts normalisation parameters.
    optimizer.params.weight_decay_norm = None
    train.init_checkpoint = TORCHVISION_R50
