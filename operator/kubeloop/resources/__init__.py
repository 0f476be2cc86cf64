"""Pure builders: spec -> Kubernetes manifests as dicts. No API client is imported here."""
