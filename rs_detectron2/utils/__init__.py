"""Utilities of rs_detectron2 (``testing``: oracles and inputs for tests and benchmarks;
``visualizer``: pictures of detections)."""
