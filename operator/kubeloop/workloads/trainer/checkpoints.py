"""Per-epoch checkpoints under `<artifacts>/runs/<run-id>/checkpoints/`, for resume.

A checkpoint is a plain dict of tensors and numbers saved with torch.save and read back with
`weights_only=True` (no arbitrary unpickling). It carries a signature of the data and params:
a checkpoint of a different spec under the same run id is ignored, never resumed.
"""

from __future__ import annotations

import io
import logging
import re
from typing import Any

from kubeloop.storage import ObjectStore, StorageError, join, store_for

__all__ = ["CheckpointStore"]

log = logging.getLogger("kubeloop.train")
_EPOCH = re.compile(r"/epoch-(\d+)\.pt$")


class CheckpointStore:
    """Save and find the latest checkpoint of one run."""

    def __init__(self, artifacts: str, run_id: str, store: ObjectStore | None = None) -> None:
        self.prefix = join(artifacts, "runs", run_id, "checkpoints")
        self.store = store if store is not None else store_for(artifacts)

    def uri(self, epoch: int) -> str:
        """Where the checkpoint after `epoch` (1-based) goes."""
        return join(self.prefix, f"epoch-{epoch:05d}.pt")

    def save(self, epoch: int, state: dict[str, Any]) -> str:
        """Write the checkpoint of `epoch`, then drop the ones before the previous."""
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        uri = self.uri(epoch)
        self.store.write_bytes(uri, buffer.getvalue())
        for older in self._epochs():
            if older < epoch - 1:  # keep two: a crash while writing still leaves one whole
                self.store.delete(self.uri(older))
        return uri

    def _epochs(self) -> list[int]:
        found = []
        for obj in self.store.list(self.prefix + "/"):
            match = _EPOCH.search(obj.uri)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def latest(self, signature: str) -> dict[str, Any] | None:
        """The newest readable checkpoint with this signature, or None."""
        import torch

        for epoch in reversed(self._epochs()):
            try:
                data = self.store.read_bytes(self.uri(epoch))
                state: dict[str, Any] = torch.load(
                    io.BytesIO(data), map_location="cpu", weights_only=True
                )
            except (StorageError, RuntimeError, EOFError) as exc:
                log.warning("checkpoint %s unreadable (%s); trying an older one", epoch, exc)
                continue
            if state.get("signature") != signature:
                log.warning("checkpoint %s belongs to another spec; starting afresh", epoch)
                return None
            return state
        return None
