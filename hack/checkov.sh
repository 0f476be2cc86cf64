#!/usr/bin/env bash
# Scan the rendered chart (every value set of tests/chart) and the Dockerfiles with checkov, offline.
# Usage: hack/checkov.sh [extra checkov args, e.g. -o json]. tests/chart/test_checkov.py runs it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/hack/install-checkov.sh" >&2
helm="$root/.tools/bin/helm"
[[ -x "$helm" ]] || helm="$(command -v helm || true)"
[[ -n "$helm" ]] || { echo "helm not found: run make tools" >&2; exit 2; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$helm" template kubeloop "$root/charts/kubeloop" -n kubeloop-system > "$out/default.yaml"
# The value sets of tests/chart/test_chart.py (VALUE_SETS): every tests/chart/values-*.yaml.
for values in "$root"/tests/chart/values-*.yaml; do
  name="$(basename "$values" .yaml)"
  "$helm" template kubeloop "$root/charts/kubeloop" -n kubeloop-system -f "$values" > "$out/${name#values-}.yaml"
done
# --skip-download: no Prisma Cloud guidelines fetch (no network here, and no API key, so
# checkov reports no severities: the tests therefore require 0 failed checks of any severity).
"$root/.venv-checkov/bin/checkov" --skip-download --quiet \
  -d "$out" --framework kubernetes -d "$root/images" --framework dockerfile "$@"
