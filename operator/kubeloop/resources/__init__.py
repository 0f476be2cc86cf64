"""Pure builders: a parsed spec in, Kubernetes manifests (plain dicts) out. No API client here."""
