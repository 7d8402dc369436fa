"""The former module of :class:`~rs_detectron2.modeling.RSDenseDetector` (then ``RSRetinaNet``).

Kept so that LazyConfigs saved before the rename still load: their ``_target_`` is the dotted path
``rs_detectron2.modeling.meta_arch.rs_retinanet.RSRetinaNet``. New code imports
``RSDenseDetector`` from :mod:`rs_detectron2.modeling`.
"""

from .rs_dense_detector import RSRetinaNet

__all__ = ["RSRetinaNet"]
