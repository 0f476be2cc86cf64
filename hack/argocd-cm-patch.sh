#!/usr/bin/env bash
# Print an argocd-cm patch that installs Kubeloop's Argo CD health checks:
#   hack/argocd-cm-patch.sh | kubectl -n argocd patch configmap argocd-cm --patch-file /dev/stdin
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python3 - "$root/deploy/argocd/kubeloop.io" <<'PY'
import pathlib, sys, yaml
yaml.SafeDumper.add_representer(
    str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None)
)
base = pathlib.Path(sys.argv[1])
data = {
    f"resource.customizations.health.kubeloop.io_{kind}": (base / kind / "health.lua").read_text()
    for kind in ("TrainingPipeline", "ModelDeployment", "DriftMonitor")
}
print(yaml.safe_dump({"data": data}, sort_keys=False, width=1000), end="")
PY
