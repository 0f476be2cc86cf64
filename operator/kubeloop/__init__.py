"""Kubeloop: a Kubernetes operator that closes the ML loop: train, deploy, monitor, retrain."""

__all__ = ["API_GROUP", "API_VERSION", "__version__"]

__version__ = "0.1.0"
API_GROUP = "kubeloop.io"
API_VERSION = "v1alpha1"
