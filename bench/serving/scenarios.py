"""The serving benchmark's scenarios: one model, the peer that serves it, the target it must meet.

Each scenario is one model file served by `kubeloop serve` and by a peer (MLServer 1.7 with the
model's runtime, or KServe's Python ModelServer), with the same V2 body sent to both. The
configurations of a scenario are Kubeloop at its defaults and every peer setting worth trying;
Kubeloop is compared with the peer's best (highest throughput) at each concurrency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.serving.model import (
    DIGITS_FEATURES,
    Folders,
    write_digits,
    write_forest,
    write_hgb,
    write_linear,
    write_xgboost,
)

__all__ = ["KUBELOOP", "SCENARIOS", "Config", "Scenario", "Target", "configs_of"]

KUBELOOP = "kubeloop"


@dataclass(frozen=True)
class Target:
    """Kubeloop's throughput >= `ratio` x the peer's best at `throughput_at`; its p99 no higher
    than that configuration's at `p99_at`. Other concurrencies are reported as they are."""

    ratio: float
    throughput_at: tuple[int, ...]
    p99_at: tuple[int, ...] = ()

    def describe(self) -> str:
        """One line for the summary."""
        text = f">= {self.ratio:g}x throughput at c={', c='.join(map(str, self.throughput_at))}"
        if self.p99_at:
            text += f", p99 no higher at c={', c='.join(map(str, self.p99_at))}"
        return text


@dataclass(frozen=True)
class Scenario:
    """One model, its peer and its target."""

    name: str  # also the model's name in both servers' URLs
    title: str
    peer: str  # "MLServer" | "KServe"
    write: Callable[[Path], Folders]
    features: int
    datatype: str  # of the body's tensor
    target: Target
    source: str  # who set the target
    mlserver_runtime: str = ""  # MLServer `implementation`, when the peer is MLServer
    payload_log: bool = False  # also measure Kubeloop with payload logging (shown, not compared)


@dataclass(frozen=True)
class Config:
    """One server configuration under test."""

    name: str  # unique over the run: "<scenario>: <setting>"
    scenario: str
    server: str  # "kubeloop" | "mlserver" | "kserve"
    batch: int = 0  # max batch size (0: MLServer's batching off)
    wait_ms: float = 0.0
    parallel_workers: int = 1  # MLServer only
    payload_log: bool = False  # Kubeloop only

    @property
    def setting(self) -> str:
        """The name without the scenario."""
        return self.name.split(": ", 1)[1]

    @property
    def is_kubeloop(self) -> bool:
        """Kubeloop at its defaults: the configuration compared with the peer."""
        return self.server == KUBELOOP and not self.payload_log


BOTH = (1, 64)
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "hgb",
            "HistGradientBoosting (sklearn joblib, compiled tree path) vs MLServer sklearn",
            "MLServer",
            write_hgb,
            20,
            "FP64",
            Target(2.0, BOTH, BOTH),
            "issue 5",
            mlserver_runtime="mlserver_sklearn.SKLearnModel",
            payload_log=True,
        ),
        Scenario(
            "xgboost",
            "XGBoost model.ubj (modelFormat xgboost) vs MLServer xgboost",
            "MLServer",
            write_xgboost,
            20,
            "FP64",
            Target(2.0, BOTH, BOTH),
            "issue 16",
            mlserver_runtime="mlserver_xgboost.XGBoostModel",
        ),
        Scenario(
            "digits",
            "digits CNN, TorchScript (modelFormat torchscript) vs KServe ModelServer",
            "KServe",
            write_digits,
            DIGITS_FEATURES,
            "FP32",
            Target(2.0, BOTH),
            "issue 16",
        ),
        Scenario(
            "forest",
            "RandomForestClassifier (sklearn joblib) vs MLServer sklearn",
            "MLServer",
            write_forest,
            20,
            "FP64",
            Target(2.0, (64,)),
            "issue 16",
            mlserver_runtime="mlserver_sklearn.SKLearnModel",
        ),
        Scenario(
            "linear",
            "StandardScaler + LogisticRegression pipeline (sklearn joblib) vs MLServer sklearn",
            "MLServer",
            write_linear,
            20,
            "FP64",
            Target(2.0, (64,)),
            "issue 16",
            mlserver_runtime="mlserver_sklearn.SKLearnModel",
        ),
    )
}


def configs_of(scenario: Scenario) -> list[Config]:
    """Kubeloop at its defaults (adaptive batching 64 rows / 2 ms), then the peer's settings:
    MLServer with parallel_workers 1 and 0, adaptive batching off and 64 / 2 ms; KServe as is
    (its Python server has no batching of its own)."""
    name = scenario.name
    configs = [Config(f"{name}: {KUBELOOP}", name, KUBELOOP, 64, 2.0)]
    if scenario.payload_log:
        configs.append(
            Config(f"{name}: kubeloop + payload log", name, KUBELOOP, 64, 2.0, payload_log=True)
        )
    if scenario.peer == "KServe":
        return [*configs, Config(f"{name}: kserve", name, "kserve")]
    for workers in (1, 0):
        configs += [
            Config(f"{name}: mlserver pw={workers} no batching", name, "mlserver", 0, 0, workers),
            Config(f"{name}: mlserver pw={workers} batch 64/2ms", name, "mlserver", 64, 2, workers),
        ]
    return configs
