from .rs_rpn import RSRPN

__all__ = ["RSRPN"]
