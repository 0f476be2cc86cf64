"""Parse custom resources into the models, with errors that name the field and the fix."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from kubeloop.api.common import FieldError
from kubeloop.api.deployment import ModelDeployment
from kubeloop.api.monitor import DriftMonitor
from kubeloop.api.training import TrainingPipeline

__all__ = ["RESOURCE_MODELS", "Resource", "SpecError", "error_messages", "parse_resource"]

Resource = TrainingPipeline | ModelDeployment | DriftMonitor
RESOURCE_MODELS: dict[str, type[Resource]] = {
    "TrainingPipeline": TrainingPipeline,
    "ModelDeployment": ModelDeployment,
    "DriftMonitor": DriftMonitor,
}


class SpecError(ValueError):
    """A custom resource the operator cannot run; `messages` name each field at fault."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


_NAMES_ITS_FIELD = re.compile(r"^(spec|metadata|status)[.:\[ ]")


def error_messages(exc: ValidationError) -> list[str]:
    """One line per problem, `<field path>: <what is wrong>`, with wire (camelCase) names."""
    lines = []
    for error in exc.errors():
        path = ""
        for key in error["loc"]:
            path = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
        message = error["msg"].removeprefix("Value error, ")
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, FieldError):
            path += cause.subpath
        if error["type"] == "extra_forbidden":
            message = "unknown field; check the spelling against `kubectl explain`"
        elif error["type"] == "missing":
            message = "Required value"
        if not path or _NAMES_ITS_FIELD.match(message):
            lines.append(message)  # most cross-field rules name their field themselves
        else:
            lines.append(f"{path}: {message}")
    return lines


def parse_resource(obj: dict[str, Any]) -> Resource:
    """Validate a whole object (apiVersion, kind, metadata, spec, status) into its model."""
    kind = obj.get("kind")
    model = RESOURCE_MODELS.get(str(kind))
    if model is None:
        raise SpecError([f"kind: {kind!r} is not one of {', '.join(RESOURCE_MODELS)}"])
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise SpecError(error_messages(exc)) from exc
