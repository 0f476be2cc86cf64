"""kopf handlers (one module per kind) and the one module that talks to the API (`kube`).

Importing this package registers every handler, so `kopf run -m kubeloop.controller` works.
"""

from kubeloop.controller import deployment, main, monitor, observe, training

__all__ = ["deployment", "main", "monitor", "observe", "training"]
