"""Server settings: env `KUBELOOP_*` (docs/contracts.md), each overridable by an equal flag."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubeloop.formats import LoadOptions

__all__ = ["ServerSettings", "load_options", "parse_settings"]


class ServerSettings(BaseSettings):
    """What `kubeloop serve` reads from env (prefix `KUBELOOP_`) or flags of the same name."""

    model_config = SettingsConfigDict(
        env_prefix="KUBELOOP_", extra="ignore", protected_namespaces=()
    )

    model_uri: str = Field(description="Version folder to serve (file:// or s3://).")
    model_name: str = Field(default="model", description="Name in the V2 paths.")
    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port of /v2 and /metrics.")
    grpc_port: int = Field(
        default=8081, ge=0, le=65535, description="Port of the V2 gRPC endpoint; 0 = off."
    )
    workers: int = Field(default=1, ge=1, le=64, description="Server processes.")
    max_batch_size: int = Field(default=64, ge=1, le=4096, description="Most rows per call.")
    max_latency_ms: float = Field(
        default=2.0, ge=0, le=1000, description="Longest a request waits for others to join."
    )
    payload_log_uri: str = Field(default="", description="Parquet log folder; empty = off.")
    payload_sample_rate: float = Field(default=1.0, ge=0, le=1, description="Share logged.")
    payload_flush_rows: int = Field(
        default=10_000, ge=1, description="Rows that trigger a Parquet file before the interval."
    )
    payload_flush_seconds: float = Field(
        default=5.0, gt=0, description="Longest rows wait in memory before being written."
    )
    payload_max_pending_rows: int = Field(
        default=200_000, ge=1, description="Memory bound: rows beyond it are dropped and counted."
    )
    max_request_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Larger bodies get 413."
    )
    max_request_rows: int = Field(default=10_000, ge=1, description="More rows get 413.")
    work_dir: str = Field(default="/tmp", description="Writable scratch for the downloaded model.")
    shutdown_timeout_s: float = Field(
        default=25.0, ge=0, description="Longest SIGTERM waits for in-flight requests."
    )
    header_timeout_s: float = Field(
        default=10.0,
        ge=0,
        description="A request's headers must arrive within this (else 408); 0 = no limit.",
    )
    allow_pickle: bool = Field(
        default=False,
        description="Load pickles (joblib, untrusted skops types) that Kubeloop's trainer did "
        "not write; they can run any code when loaded.",
    )
    allow_custom_code: bool = Field(
        default=False,
        description="Run the custom predictor a version ships in its code/ folder.",
    )
    custom_predictors: str = Field(
        default="",
        description="Comma-separated module:Class custom predictors this image may load.",
    )
    model_threads: int = Field(
        default=1, ge=1, le=64, description="BLAS/OpenMP threads per worker for the model."
    )
    auth_token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token every route but health and /metrics requires; empty = off.",
    )
    tls_cert_file: str = Field(
        default="", description="PEM certificate (chain) to serve HTTPS with; empty = HTTP."
    )
    tls_key_file: str = Field(default="", description="PEM private key of tls_cert_file.")

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError(
                "tls_cert_file and tls_key_file go together: set both (HTTPS) or neither (HTTP)"
            )
        return self


def load_options(settings: ServerSettings) -> LoadOptions:
    """The allowances a version folder cannot grant itself."""
    names = frozenset(n.strip() for n in settings.custom_predictors.split(",") if n.strip())
    return LoadOptions(
        allow_pickle=settings.allow_pickle,
        custom_predictors=names,
        allow_custom_code=settings.allow_custom_code,
    )


def parse_settings(argv: list[str]) -> ServerSettings:
    """Env first, then flags (`--model-uri`, `--port`, ...) override it."""
    parser = argparse.ArgumentParser(
        prog="kubeloop serve", description="Serve a model version over V2 REST."
    )
    for name, field in ServerSettings.model_fields.items():
        if field.annotation is SecretStr:
            continue  # env only: a flag would show the secret in `ps` and in the pod's args
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            help=f"{field.description} (env KUBELOOP_{name.upper()})",
        )
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if v is not None}
    return ServerSettings(**overrides)
