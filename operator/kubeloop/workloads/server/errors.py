"""Errors a client can cause or meet, each carrying its HTTP status (answered as {"error": ...})."""

from __future__ import annotations

__all__ = [
    "InferenceError",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "ModelNotReadyError",
    "NotFoundError",
    "PayloadTooLargeError",
]


class InferenceError(Exception):
    """Base: `status` is the HTTP code, the message is what the client reads."""

    status = 500


class InvalidRequestError(InferenceError):
    """The request is malformed; the message names the tensor and the field."""

    status = 400


class NotFoundError(InferenceError):
    """Unknown model, version or route."""

    status = 404


class MethodNotAllowedError(InferenceError):
    """A known path asked with the wrong HTTP method."""

    status = 405


class PayloadTooLargeError(InferenceError):
    """Body or row count above the configured limit."""

    status = 413


class ModelNotReadyError(InferenceError):
    """The model is still loading, failed verification, or the server is shutting down."""

    status = 503
