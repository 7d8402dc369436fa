"""rs_detectron2: Rank & Sort Loss for Detectron2."""

import warnings

# fvcore and Detectron2 script a few functions with torch.jit.script when they are imported, and
# setuptools deprecates the pkg_resources that Detectron2's LazyConfig loader imports; each notice
# was printed by every command before its own output, and neither is the user's to act on. Only
# these two messages are silenced; this package is imported before Detectron2 by its commands.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)
warnings.filterwarnings(
    "ignore", message=r"pkg_resources is deprecated as an API", category=UserWarning
)

__version__ = "0.1.0"
