#!/usr/bin/env bash
# Install checkov into its own git-ignored venv (.venv-checkov): its pinned dependencies would
# fight the project's. Installed by uv (hack/uvpip.py); a no-op once installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${CHECKOV_VENV:-$root/.venv-checkov}"
version="3.3.30"
if [[ -x "$venv/bin/checkov" ]] && "$venv/bin/checkov" --version 2>/dev/null | grep -qx "$version"; then
  exit 0
fi
python3 -m venv --without-pip "$venv"  # uv installs; checkov needs no pip
python3 "$root/hack/uvpip.py" install --quiet --python "$venv/bin/python" "checkov==$version"
echo "installed $("$venv/bin/checkov" --version) into $venv"
