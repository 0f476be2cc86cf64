"""The SDK's version: recorded as `sdkVersion` in every model manifest it writes."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
