#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install everything rs_detectron2 needs.
#
#   scripts/install.sh            # creates ./.venv if missing, installs what is missing
#   VENV=/path/to/env scripts/install.sh
#
# A second run finds the stamp file written at the end and installs nothing.
# Detectron2: if the interpreter used to create the venv can already import an official
# Detectron2, the venv is created with --system-site-packages and that Detectron2 (and its torch)
# is used as is; nothing is installed over it. Otherwise Detectron2 comes from the PyPI package
# sal-detectron2==0.7.2 (upstream commit a59f056), whose only wheel is tagged cp310 but is pure
# Python: it is downloaded for 3.10, renamed to py3-none-any and installed.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
D2_SPEC="sal-detectron2==0.7.2"
EXTRA_SPECS=(fvcore iopath pycocotools lvis "setuptools<81" "numpy<2" matplotlib pytest "faster-coco-eval==1.8.0" "ruff==0.17.6")

# The stamp records what this script installed; it changes when this script or pyproject changes.
want=$(cat scripts/install.sh pyproject.toml | sha256sum | cut -c1-16)
stamp="$VENV/.rs_detectron2_install"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import rs_detectron2" 2>/dev/null; then
  exit 0
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "install.sh: $PYTHON not found; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

user_d2=0
if [ ! -x "$VENV/bin/python" ]; then
  if "$PYTHON" -c "import detectron2, torch" 2>/dev/null; then
    echo "install.sh: $PYTHON already imports Detectron2; creating $VENV on top of it (--system-site-packages)"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    echo "install.sh: creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q)

# A Detectron2 that is not ours (e.g. built from source) is kept, together with its torch.
if "$PY" -c "import detectron2" 2>/dev/null && ! "$PY" -m pip show -q sal-detectron2 >/dev/null 2>&1; then
  user_d2=1
  echo "install.sh: using the Detectron2 already installed: $("$PY" -c 'import detectron2; print(detectron2.__file__)')"
fi

if [ $user_d2 = 1 ] && "$PY" -c "import torch, torchvision" 2>/dev/null; then
  echo "install.sh: keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  echo "install.sh: installing $TORCH_SPEC (a few minutes the first time)"
  # shellcheck disable=SC2086
  "${PIP[@]}" $TORCH_SPEC
fi

if [ $user_d2 = 0 ] && ! "$PY" -c "import detectron2" 2>/dev/null; then
  echo "install.sh: installing Detectron2 from $D2_SPEC (cp310 wheel, pure Python, renamed to py3-none-any)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$PY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
    --python-version 3.10 -d "$tmp" "$D2_SPEC"
  whl=$(ls "$tmp"/sal_detectron2-*.whl)
  pure="$tmp/$(basename "$whl" | sed -E 's/-cp[0-9]+-[^-]+-[^-]+\.whl$/-py3-none-any.whl/')"
  mv "$whl" "$pure"
  "${PIP[@]}" "$pure"
fi

echo "install.sh: installing ${EXTRA_SPECS[*]}"
"${PIP[@]}" "${EXTRA_SPECS[@]}"
echo "install.sh: installing rs_detectron2 (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e .

"$PY" - <<'PY'
import torch, detectron2, numpy
import rs_detectron2
print(f"install.sh: ok: torch {torch.__version__}, detectron2 {detectron2.__version__} "
      f"({detectron2.__file__}), numpy {numpy.__version__}, rs_detectron2 {rs_detectron2.__version__}")
PY
echo "$want" > "$stamp"
