"""`kubeloop local`: the whole loop on one machine, no cluster.

- `cluster`: the stand-in for a Kubernetes cluster: the API (`cluster.emulator`), the pod runner
  that runs pods as local processes, their network and the Service proxy, the CronJob,
  Deployment and Job controllers, and the stack that starts it all with the operator;
- `demo`: the `make demo` scenario run against that cluster: traffic, live view and report;
- `main`: the `kubeloop local` command line, and `printer` its `get` tables (the live view
  prints them too).

The cluster never imports the demo (an import-linter contract in pyproject.toml).
"""

__all__: list[str] = []
