"""`kubeloop versions` and `kubeloop compare`: the model registry for humans, read directly
from object storage (`source`), shown by pure functions (`views`)."""

__all__: list[str] = []
