"""Build hook only; the project's metadata lives in pyproject.toml.

Like Detectron2's ``setup.py``, a built package carries the LazyConfig recipes: every file under
``configs/`` (``common/`` included, whatever is added later) is copied into the build as
``rs_detectron2/model_zoo/configs/``, where ``rs_detectron2.model_zoo.config_dir()`` finds them.
An editable install copies nothing: ``config_dir()`` then reads the checkout's ``configs/``.
"""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG_ROOT = os.path.join(HERE, "configs")
PACKAGED_CONFIGS = os.path.join("rs_detectron2", "model_zoo", "configs")


def config_files(root=CONFIG_ROOT):
    """Paths (relative to ``root``) of every file under ``root`` but Python caches."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not name.endswith((".pyc", ".pyo")):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


class BuildPyWithConfigs(build_py):
    """``build_py`` that also copies ``configs/`` into the built package (not in editable mode)."""

    def run(self):
        super().run()
        if self.editable_mode:
            return
        files = config_files()
        if not files:
            raise RuntimeError(f"no configs found under {CONFIG_ROOT}; the package would ship none")
        packaged = os.path.join(self.build_lib, PACKAGED_CONFIGS)
        if os.path.isdir(packaged):  # a reused build/ must not keep configs deleted since
            shutil.rmtree(packaged)
        for rel in files:
            target = os.path.join(packaged, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            self.copy_file(os.path.join(CONFIG_ROOT, rel), target)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if not self.editable_mode:
            outputs += [os.path.join(self.build_lib, PACKAGED_CONFIGS, f) for f in config_files()]
        return outputs


setup(cmdclass={"build_py": BuildPyWithConfigs})
