"""Why a training run failed: one reason, one exit code, one message a person can act on.

| exit | reason | when |
| ---: | --- | --- |
| 0 | - | a version was written (or this rank finished its share) |
| 1 | InternalError | a bug or an unexpected failure (the message has the exception) |
| 10 | InvalidSpec | the spec does not parse or misses `--spec` / `KUBELOOP_SPEC` |
| 11 | UnknownEstimator | the estimator is not on the allow-list |
| 12 | InvalidParameter | `spec.model.params.<name>` is not accepted by the estimator |
| 20 | DataNotFound | no Parquet file at `spec.data.train` / `spec.data.validation` |
| 21 | EmptyDataset | the data has no rows |
| 22 | MissingTargetColumn | `spec.data.target` is not a column |
| 23 | MissingFeatureColumn | a column of `spec.data.features` is not in the data |
| 24 | NonNumericColumn | a numeric-looking column holds strings, or train/validation types differ |
| 25 | InvalidTarget | one class, a non-numeric regression target, fractional class labels |
| 26 | CorruptData | a file under `spec.data.*` is not readable Parquet |
| 27 | DataValidationFailed | the data fails spec.dataValidation against the champion's profile |
| 30 | StorageUnreachable | the endpoint cannot be reached or the bucket does not exist |
| 31 | StorageAccessDenied | reading data was refused (credentials) |
| 32 | ArtifactsNotWritable | no permission to write under `spec.artifacts` |
| 33 | StorageError | any other object-storage failure |
| 40 | NoModelWritten | custom code exited 0 without saving a model (`kubeloop_sdk.save_model`) |
| 41 | ModelDoesNotLoad | the model custom code saved does not load with its format class |
| 42 | SignatureMismatch | it loads but does not take the features or give the task's outputs |

A custom run's own code failing is `UserCodeFailed` (its exit code in the message): the operator
reads it from the pod, since no Kubeloop process runs after it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXIT_CODES", "TrainingError", "classify_storage_error"]

EXIT_CODES: dict[str, int] = {
    "InternalError": 1,
    "InvalidSpec": 10,
    "UnknownEstimator": 11,
    "InvalidParameter": 12,
    "DataNotFound": 20,
    "EmptyDataset": 21,
    "MissingTargetColumn": 22,
    "MissingFeatureColumn": 23,
    "NonNumericColumn": 24,
    "InvalidTarget": 25,
    "CorruptData": 26,
    "DataValidationFailed": 27,
    "StorageUnreachable": 30,
    "StorageAccessDenied": 31,
    "ArtifactsNotWritable": 32,
    "StorageError": 33,
    "NoModelWritten": 40,
    "ModelDoesNotLoad": 41,
    "SignatureMismatch": 42,
}


class TrainingError(Exception):
    """A failure with a reason from EXIT_CODES and a message naming the field or file."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in EXIT_CODES:
            raise ValueError(f"unknown training failure reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def exit_code(self) -> int:
        """The process exit code for this reason."""
        return EXIT_CODES[self.reason]


_UNREACHABLE = {
    "NoSuchBucket",
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "ReadTimeoutError",
}
_DENIED = {
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
}


def _code(exc: BaseException | None) -> str:
    seen = 0
    while exc is not None and seen < 5:
        response: Any = getattr(exc, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):
            return str(response["Error"]["Code"])
        name = type(exc).__name__
        if name in _UNREACHABLE or isinstance(exc, PermissionError):
            return "PermissionError" if isinstance(exc, PermissionError) else name
        exc = exc.__cause__
        seen += 1
    return ""


def classify_storage_error(exc: BaseException, *, writing: bool) -> TrainingError:
    """Turn a storage failure (and its cause chain) into a TrainingError with its reason."""
    code = _code(exc)
    text = str(exc)
    if code in _UNREACHABLE or "bucket of" in text:
        return TrainingError("StorageUnreachable", text)
    if code in _DENIED or code == "PermissionError" or "permission" in text.lower():
        if writing:
            return TrainingError(
                "ArtifactsNotWritable",
                f"{text} (spec.artifacts must be writable with the storageSecretRef credentials)",
            )
        return TrainingError("StorageAccessDenied", text)
    return TrainingError("StorageError", text)
