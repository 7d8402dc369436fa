from .checkpoint import AtomicCheckpointer, existing_checkpoint

__all__ = ["AtomicCheckpointer", "existing_checkpoint"]
