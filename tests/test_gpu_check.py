"""benchmarks/gpu_check.py, the one-command GPU report, run on the CPU with the tiny configs
(``--device cpu --tiny``), so that the script cannot rot between the rare GPU sessions."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from rs_detectron2.utils.testing import REPO

SCRIPT = os.path.join(REPO, "benchmarks", "gpu_check.py")


def load_script():
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_tiny_report_has_every_part(tmp_path):
    out = tmp_path / "report"
    cmd = [sys.executable, SCRIPT, "--out", str(out), "--device", "cpu", "--tiny"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    gc = load_script()
    # smoke: every tiny RS config, with AMP, and RS-Faster / RS-ATSS also in float32
    configs = {e["config"] for e in data["smoke"]}
    assert configs == set(gc.smoke_configs(tiny=True)) and len(configs) >= 10
    failed = [(e["config"], e.get("error")) for e in data["smoke"] if e["status"] != "ok"]
    assert not failed
    assert {e["config"] for e in data["smoke"] if not e["amp"]} == {
        "quick_schedules/rs_faster_rcnn_tiny.py",
        "quick_schedules/rs_atss_tiny.py",
    }
    assert all(e["detections"] >= 0 and e["last_loss"] > 0 for e in data["smoke"])
    # step: every RS model against its stock twin
    assert {e["model"] for e in data["step"]} >= {"Faster R-CNN", "SOLOv2", "RS-ATSS"}
    assert all(e["ratio"] > 0 for e in data["step"]), data["step"]
    # loss: RS, AP and aLRP against the loops, ours faster on the dense case
    dense = [e for e in data["loss"] if e["case"].startswith("dense")]
    assert {e["loss"] for e in dense} == {"RS", "AP", "aLRP"}
    assert all(e["speedup"] > 1 for e in dense), dense
    # launches: both sizes, both chunk sizes, one host read each
    launches = data["launches"]
    assert {(e["N"], e["P"]) for e in launches} == set(gc.LAUNCH_SIZES)
    assert {e["path"] for e in launches} == {"this device's", "GPU path's"}
    assert all(e["host_reads"] == 1 and e["ops"] > 0 for e in launches)
    report = (out / "gpu_check.md").read_text()
    for heading in ("## Smoke", "## Training step", "## Losses", "## Launches"):
        assert heading in report
    assert data["meta"]["commit"] and "--tiny" in data["meta"]["command"]


def test_only_runs_the_named_parts_and_rejects_unknown_ones(tmp_path):
    gc = load_script()
    gc.main(["--out", str(tmp_path), "--device", "cpu", "--tiny", "--only", "loss"])
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["loss"] and not data["smoke"] and not data["step"] and not data["launches"]
    with pytest.raises(SystemExit):
        gc.parse_args(["--out", str(tmp_path), "--only", "smoke,speed"])
