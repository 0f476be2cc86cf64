"""OpenAPI 3.0 description of the V2 endpoints this server answers (GET /v2/openapi.json).

Written by hand from the Open Inference Protocol REST spec, restricted to what the server
implements; schemathesis fuzzes the server against it in tests.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}


def _json(schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_TENSOR_INPUT = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "FP32",
                "FP64",
                "BYTES",
            ],
        },
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
_TENSOR_OUTPUT = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string"},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _TENSOR_INPUT},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": _TENSOR_OUTPUT},
    },
}
_MODEL_METADATA = {
    "type": "object",
    "required": ["name", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array"},
        "outputs": {"type": "array"},
    },
}


def openapi_document(model_name: str) -> dict[str, Any]:
    """The OpenAPI document; `model_name` is the path's only valid model name (an example)."""
    model_param = {
        "name": "model_name",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "example": model_name,
    }
    version_param = {
        "name": "model_version",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    errors = {"400": _ERROR, "404": _ERROR, "413": _ERROR, "503": _ERROR}
    infer = {
        "post": {
            "summary": "Run inference",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _INFER_REQUEST}},
            },
            "responses": {"200": _json(_INFER_RESPONSE), **errors},
        }
    }
    ready = {
        "get": {
            "summary": "Model readiness",
            "responses": {
                "200": _json({"type": "object", "properties": {"ready": {"type": "boolean"}}}),
                "404": _ERROR,
                "503": _ERROR,
            },
        }
    }
    metadata = {
        "get": {
            "summary": "Model metadata",
            "responses": {"200": _json(_MODEL_METADATA), "404": _ERROR, "503": _ERROR},
        }
    }

    def with_params(item: dict[str, Any], params: list[dict[str, Any]]) -> dict[str, Any]:
        return {**item, "parameters": params}

    both = [model_param, version_param]
    return {
        "openapi": "3.0.3",
        "info": {"title": "Kubeloop model server (Open Inference Protocol V2)", "version": "2"},
        "paths": {
            "/v2/health/live": {
                "get": {"summary": "Liveness", "responses": {"200": _json({"type": "object"})}}
            },
            "/v2/health/ready": {
                "get": {
                    "summary": "Readiness",
                    "responses": {"200": _json({"type": "object"}), "503": _ERROR},
                }
            },
            "/v2": {
                "get": {
                    "summary": "Server metadata",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["name", "version", "extensions"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "version": {"type": "string"},
                                    "extensions": {"type": "array", "items": {"type": "string"}},
                                },
                            }
                        )
                    },
                }
            },
            "/v2/models/{model_name}": with_params(metadata, [model_param]),
            "/v2/models/{model_name}/ready": with_params(ready, [model_param]),
            "/v2/models/{model_name}/infer": with_params(infer, [model_param]),
            "/v2/models/{model_name}/versions/{model_version}": with_params(metadata, both),
            "/v2/models/{model_name}/versions/{model_version}/ready": with_params(ready, both),
            "/v2/models/{model_name}/versions/{model_version}/infer": with_params(infer, both),
        },
    }
