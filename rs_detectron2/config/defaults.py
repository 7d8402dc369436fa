"""The yacs keys of the RS heads (``cfg.MODEL.RS``), with the paper's settings as defaults.

A yacs config names the RS classes through Detectron2's registries (``MODEL.META_ARCHITECTURE:
RSRetinaNet`` (the :class:`~rs_detectron2.modeling.RSDenseDetector`), ``MODEL.PROPOSAL_GENERATOR.
NAME: RSRPN``, ``MODEL.ROI_HEADS.NAME: RSStandardROIHeads`` or ``RSCascadeROIHeads``,
``MODEL.ROI_MASK_HEAD.NAME: RSMaskRCNNConvUpsampleHead``); their ``from_config`` read Detectron2's
keys for everything the RS heads share with the stock ones, and ``MODEL.RS`` for what is RS's own
or whose RS setting differs from Detectron2's default (Oksuz et al. 2021, Sec. 5 and the configs of
its code): the RPN loss weight 0.2, box coder weights (10, 10, 5, 5), no RoI sampling, the R-CNN
test score threshold 0.4, and the matchers, assigners and test-time rules of the authors' code.
The named choices among ``MODEL.RS`` (ranking loss, dense assigner, dense head) are looked up in
the registries of :mod:`rs_detectron2.modeling`.
"""

from detectron2.config import CfgNode as CN

__all__ = ["NO_SAMPLING", "add_rs_config"]

# A per-image RoI "sample size" larger than any proposal count: RS ranks every proposal. The yacs
# default below and the LazyConfigs (configs/common/models/rs_*_rcnn_fpn.py) use it.
NO_SAMPLING = 1_000_000_000


def add_rs_config(cfg: CN) -> CN:
    """Add the ``MODEL.RS`` keys to a Detectron2 yacs config (in place), defaults = the paper's.

    Args:
        cfg: a config from :func:`detectron2.config.get_cfg`.
    Returns:
        the same config.
    """
    rs = cfg.MODEL.RS = CN()
    # RS, AP (Chen et al. 2019) or aLRP (Oksuz et al. 2020), of RANKING_LOSS_REGISTRY; DELTA None:
    # the loss's own delta (RS 0.5, AP / aLRP 1.0). The AP / aLRP options are those of their loss
    # classes.
    rs.RANKING_LOSS = CN()
    rs.RANKING_LOSS.NAME = "RS"
    rs.RANKING_LOSS.DELTA = None
    rs.RANKING_LOSS.POOL = "local"  # or "global": one ranking pool over all processes
    rs.RANKING_LOSS.AP_BOX_WEIGHT = 2.0
    rs.RANKING_LOSS.ALRP_TAU = 0.5
    rs.RANKING_LOSS.ALRP_PERIOD = 7330
    rs.RANKING_LOSS.ALRP_INIT_WEIGHT = 50.0
    # box coder of the RPN, of every R-CNN stage and of the dense heads
    rs.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
    # anchors on an image's batch padding are ignored (the authors' code), RPN and dense heads
    rs.IGNORE_PADDING_ANCHORS = True

    rs.RPN = CN()
    rs.RPN.LOSS_WEIGHT = 0.2
    # mmdetection's low-quality matches (MinIoULowQualityMatcher): a GT's best anchor is positive
    # only at IoU >= 0.3; 0 gives Detectron2's rule back only up to ties.
    rs.RPN.MIN_LOW_QUALITY_IOU = 0.3

    rs.ROI_HEADS = CN()
    rs.ROI_HEADS.BATCH_SIZE_PER_IMAGE = NO_SAMPLING
    rs.ROI_HEADS.SCORE_THRESH_TEST = 0.4
    # R-CNN low-quality matches of mmdetection's Mask R-CNN (its Faster R-CNN has none)
    rs.ROI_HEADS.LOW_QUALITY_MATCHES = True
    rs.ROI_HEADS.MIN_LOW_QUALITY_IOU = 0.5
    rs.ROI_HEADS.MAX_MASKS_PER_BATCH = 200
    # cascade: "every_stage" (the authors': exact GT boxes in every stage) or "first" (Detectron2)
    rs.ROI_HEADS.ADD_GT_AS_PROPOSALS = "every_stage"

    # RSDenseDetector: RS-RetinaNet by default; RS-ATSS / RS-PAA / RS-FCOS change the assigner, the
    # head, the anchors, the test-time rules and the backbone, RS-FCOS the box coder too
    # (configs/yacs/)
    rs.DENSE = CN()
    # IoU (MODEL.RETINANET.IOU_*), ATSS, PAA or FCOS, of ASSIGNER_REGISTRY
    rs.DENSE.ASSIGNER = "IoU"
    rs.DENSE.ATSS_TOPK = 9
    rs.DENSE.PAA_IOU_THRESHOLD = 0.1
    rs.DENSE.PAA_TOPK = 9  # PAA's focal terms: MODEL.RETINANET.FOCAL_LOSS_ALPHA / GAMMA
    # FCOS: centre sampling radius and the per-level size range, in strides (Detectron2's FCOS)
    rs.DENSE.FCOS_CENTER_SAMPLING_RADIUS = 1.5
    rs.DENSE.FCOS_SIZE_RANGE = (4.0, 8.0)
    # "Box2BoxTransform" (weights MODEL.RS.BBOX_REG_WEIGHTS) or "Box2BoxTransformLinear" (FCOS's
    # distances to the box's sides in strides, RS-FCOS)
    rs.DENSE.BOX_TRANSFORM = "Box2BoxTransform"
    # RetinaNetHead or ScaledRetinaNetHead (ATSS / PAA, GN in MODEL.RETINANET), of
    # DENSE_HEAD_REGISTRY
    rs.DENSE.HEAD = "RetinaNetHead"
    rs.DENSE.SCORE_VOTING = False
    rs.DENSE.SCORE_VOTING_SIGMA = 0.025
    rs.DENSE.CANDIDATE_SELECTION = "pair"  # "pair" (Detectron2) or "anchor" (ATSS / PAA code)
    rs.DENSE.CLIP_BOXES_BEFORE_NMS = False
    return cfg
