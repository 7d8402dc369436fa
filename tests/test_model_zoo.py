"""rs_detectron2.model_zoo: every config is listed, the tiny models build, and a built wheel ships
every config (that each config loads and instantiates: tests/test_configs.py)."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from rs_detectron2 import model_zoo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_ROOT = os.path.join(REPO, "configs")


def files_under(root):
    """Every file below ``root`` (relative, '/'-separated), Python caches left out."""
    found = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not name.endswith(".pyc"):
                found.add(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return found


MODEL_CONFIGS = sorted(
    f for f in files_under(CONFIG_ROOT) if f.endswith(".py") and not f.startswith("common/")
)


def test_list_configs_is_every_model_config():
    configs = model_zoo.list_configs()
    assert [c.replace(os.sep, "/") for c in configs] == MODEL_CONFIGS
    assert "COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py" in configs
    assert "quick_schedules/rs_mask_rcnn_tiny.py" in configs


@pytest.mark.parametrize("name", [c for c in MODEL_CONFIGS if c.startswith("quick_schedules/")])
def test_get_builds_every_tiny_model_on_cpu(name):
    model = model_zoo.get(name, device="cpu")
    assert model.training
    assert next(model.parameters()).device.type == "cpu"
    # RS heads in every ranking-loss config (RS, AP or aLRP), stock heads in the baselines
    ranking = os.path.basename(name).split("_")[0] in ("rs", "ap", "alrp")
    assert any(type(m).__name__.startswith("RS") for m in model.modules()) == ranking


def test_get_builds_the_rs_heads():
    model = model_zoo.get("quick_schedules/rs_faster_rcnn_tiny.py", device="cpu")
    assert type(model.roi_heads).__name__ == "RSStandardROIHeads"


def test_unknown_config_and_trained_weights_are_clear_errors():
    with pytest.raises(RuntimeError, match="not a config"):
        model_zoo.get_config("COCO-Detection/nope.py")
    with pytest.raises(RuntimeError, match="no trained weights"):
        model_zoo.get_config("COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py", trained=True)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built by pip from a copy of the checkout (so no build/ lands in the repo)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(os.path.join(REPO, name), src / name)
    for name in ("rs_detectron2", "configs"):
        shutil.copytree(os.path.join(REPO, name), src / name, ignore=ignore)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(cmd + ["-w", str(tmp / "dist"), str(src)], check=True, timeout=120)
    (path,) = (tmp / "dist").glob("rs_detectron2-*.whl")
    return path


def test_wheel_ships_every_config(wheel):
    prefix = "rs_detectron2/model_zoo/configs/"
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n[len(prefix) :] for n in zf.namelist() if n.startswith(prefix)}
    expected = files_under(CONFIG_ROOT)
    assert any(f.startswith("common/models/") for f in expected)
    assert shipped == expected


def test_installed_wheel_loads_configs_from_inside_the_package(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    code = (
        "import rs_detectron2.model_zoo as mz\n"
        "cfg = mz.get_config('COCO-Detection/rs_faster_rcnn_R_50_FPN_1x.py')\n"
        "print(mz.config_dir()); print(len(mz.list_configs())); print(cfg.train.max_iter)\n"
    )
    # cwd and PYTHONPATH away from the checkout: the extracted wheel comes first on sys.path
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    config_dir, count, max_iter = out.stdout.split()
    assert config_dir == str(site / "rs_detectron2" / "model_zoo" / "configs")
    assert int(count) == len(MODEL_CONFIGS)
    # the authors' 1x: 12 epochs of COCO's 117,266 images at 16 per batch
    assert int(max_iter) == 87950
