"""Record what every tiny model and every ranking loss computes on fixed inputs.

    python tests/data/record_behaviour.py            # writes tests/data/behaviour.pt

Run only to accept an intended change of behaviour: tests/test_behaviour.py compares the tree
against the file this writes (recorded at a3841ab, before the second house pass).
"""

import os

import torch

from rs_detectron2.utils.testing import loss_snapshot, model_snapshot

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "..", "..", "configs", "quick_schedules")

if __name__ == "__main__":
    names = sorted(f for f in os.listdir(CONFIGS) if f.endswith(".py"))
    record = {"losses": loss_snapshot(), "models": {n: model_snapshot(n) for n in names}}
    torch.save(record, os.path.join(HERE, "behaviour.pt"))
    print(f"recorded {len(names)} models and {len(record['losses'])} loss values")
