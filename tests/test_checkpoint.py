"""Checkpoints are written atomically and a fresh run refuses to overwrite an earlier one."""

import os

import pytest
import torch

from rs_detectron2.engine import AtomicCheckpointer, existing_checkpoint
from rs_detectron2.engine import checkpoint as checkpoint_module
from rs_detectron2.engine.startup_checks import StartError, check_output_dir


def test_save_writes_complete_files_and_tag(tmp_path):
    model = torch.nn.Linear(3, 2)
    ckpt = AtomicCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000009", iteration=9)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]
    assert existing_checkpoint(str(tmp_path)) == str(tmp_path / "model_0000009.pth")
    data = torch.load(tmp_path / "model_0000009.pth", weights_only=False)
    assert data["iteration"] == 9
    torch.testing.assert_close(data["model"]["weight"], model.weight)


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    ckpt = AtomicCheckpointer(model, str(tmp_path))
    ckpt.save("model_final", iteration=1)
    before = (tmp_path / "model_final.pth").read_bytes()

    def killed(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt  # the run dies in the middle of writing

    monkeypatch.setattr(checkpoint_module.torch, "save", killed)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_final", iteration=2)
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"


def test_fresh_run_refuses_to_overwrite(tmp_path):
    check_output_dir(str(tmp_path))  # empty folder: fine
    AtomicCheckpointer(torch.nn.Linear(1, 1), str(tmp_path)).save("model_0000099")
    with pytest.raises(StartError, match="already holds checkpoints"):
        check_output_dir(str(tmp_path))
    for allowed in (dict(resume=True), dict(overwrite=True), dict(eval_only=True)):
        check_output_dir(str(tmp_path), **allowed)
