"""Every metric the alert rules and the Grafana dashboard query is exported by a component.

The exported names come from the real components, not from a list: the operator's default
registry after `import kubeloop.controller` (in a fresh interpreter, so nothing else this test
session imported adds to it), the model server's /metrics exposition of a real `InferenceApp`,
and the registries the trainer and the drift monitor push (their real `build_registry`). Only
metrics of other projects (Prometheus' `up`, kube-state-metrics) are listed by hand, each with
its source.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from kubeloop.api.quality import QualityFinding
from kubeloop.decide.quality import QualityVerdict
from kubeloop.workloads.monitor.metrics import add_performance
from kubeloop.workloads.monitor.metrics import build_registry as monitor_registry
from kubeloop.workloads.monitor.quality import add_quality_metrics
from kubeloop.workloads.monitor.verdict import DatasetVerdict, FeatureVerdict
from kubeloop.workloads.server.app import InferenceApp
from kubeloop.workloads.server.settings import ServerSettings
from kubeloop.workloads.trainer.pushmetrics import build_registry as trainer_registry

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "kubeloop" / "files" / "kubeloop-rules.yaml"
DASHBOARD = ROOT / "charts" / "kubeloop" / "files" / "dashboards" / "kubeloop.json"
# Exported by other projects the alerts rely on.
EXTERNAL = {
    "up": "Prometheus, per scrape target",
    "kube_deployment_spec_replicas": "kube-state-metrics",
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "kube_deployment_labels": "kube-state-metrics (metricLabelsAllowlist)",
}
# The sample names a family of each type exposes (counters: the family name has no _total).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_WORD = re.compile(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan", "by", "without", "on"}
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, keywords left out)."""
    text = _GROUPING.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", _STRING.sub('""', expr))))
    names = set()
    for match in _WORD.finditer(text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("(") or word.lower() in _KEYWORDS:
            continue  # a function or aggregation, or a keyword
        names.add(word)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('absent(up{job="kubeloop-operator"} == 1)', {"up"}),
        (
            'sum by (model, version) (rate(kubeloop_inference_requests_total{code=~"5.."}[5m]))',
            {"kubeloop_inference_requests_total"},
        ),
        (
            "histogram_quantile(0.99, sum by (namespace, model, le) (rate(x_bucket[5m])))",
            {"x_bucket"},
        ),
        ("(a - a offset 15m) > 0 or (a > 0 unless a offset 15m)", {"a"}),
        ('a and on (namespace, deployment) b{label_x="kubeloop"}', {"a", "b"}),
        ('time() - c{monitor=~"$monitor"}', {"c"}),
        ("2 * (d or on (namespace, monitor) (0 * e + 3600))", {"d", "e"}),
        ('increase(f{pipeline=~"$pipeline"}[$__range])', {"f"}),
    ],
)
def test_metric_names_of_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def _families(text: str) -> set[str]:
    """Sample names of every family in an exposition, whether or not it has samples yet."""
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SUFFIXES[family.type]
    }


def _operator() -> set[str]:
    code = (
        "import kubeloop.controller\n"
        "from prometheus_client import REGISTRY, generate_latest\n"
        "print(generate_latest(REGISTRY).decode())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return _families(proc.stdout)


def _server(tmp_path: Path) -> set[str]:
    app = InferenceApp(ServerSettings(model_uri=(tmp_path / "none").as_uri(), model_name="m"))
    return _families(app.metrics.exposition().decode())


def _trainer() -> set[str]:
    result = {
        "ok": True,
        "version": "3",
        "metrics": {"roc_auc": 0.9},
        "rows": {"train": 800, "validation": 200},
        "epochs": 4,
    }
    return _families(generate_latest(trainer_registry("churn", result, 12.5)).decode())


def _monitor() -> set[str]:
    feature = FeatureVerdict(
        name="tenure", kind="numeric", test="psi", score=0.31, threshold=0.2, drifted=True,
        scores={"psi": 0.31}, rows=100, missing=0,
    )  # fmt: skip
    verdict = DatasetVerdict(verdict="Drift", drift_share=1.0, rows=100, features=[feature])
    registry = monitor_registry(verdict, duration_seconds=1.0, schedule_interval_seconds=1800)
    issue = QualityFinding(feature="tenure", check="nullShare", value=0.4, threshold=0.1)
    quality = QualityVerdict("QualityIssue", (issue,), {("tenure", "nullShare"): 0.4})
    add_quality_metrics(registry, quality)
    add_performance(registry, {"verdict": "Degraded", "measured": {"accuracy": 0.6}})
    return _families(generate_latest(registry).decode())


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Component -> the sample names it exports."""
    return {
        "operator": _operator(),
        "server": _server(tmp_path_factory.mktemp("server")),
        "trainer (pushed)": _trainer(),
        "monitor (pushed)": _monitor(),
    }


def _rule_queries() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {
        rule.get("alert") or rule["record"]: rule["expr"]
        for group in groups
        for rule in group["rules"]
    }


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out += _panels(panel.get("panels") or [])  # collapsed rows hold their panels
    return out


def _dashboard_queries() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = {
        f"panel {panel.get('title')!r} {target.get('refId')}": target["expr"]
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets") or []
    }
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        for name in _LABEL_VALUES.findall(text):
            queries[f"variable ${variable['name']}"] = name
    return queries


def test_every_metric_the_alerts_and_dashboard_query_is_exported(
    exported: dict[str, set[str]],
) -> None:
    known = set().union(*exported.values())
    queries = {**{f"alert {k}": v for k, v in _rule_queries().items()}, **_dashboard_queries()}
    used: dict[str, list[str]] = {}
    for where, expr in queries.items():
        for name in metric_names(expr):
            used.setdefault(name, []).append(where)
    assert len(used) >= 12, f"the query parser found too little: {sorted(used)}"
    missing = {name: places for name, places in used.items() if name not in known | set(EXTERNAL)}
    assert not missing, f"queried, but no component exports them: {missing}"
    # The hand-made list holds only what a query still needs.
    assert set(EXTERNAL) <= set(used), sorted(set(EXTERNAL) - set(used))


def _operator_metrics() -> list[MetricWrapperBase]:
    """Every metric a module of kubeloop.controller defines (found, not listed)."""
    import kubeloop.controller

    found: dict[int, MetricWrapperBase] = {}
    for info in pkgutil.iter_modules(kubeloop.controller.__path__, "kubeloop.controller."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                found[id(value)] = value
    return list(found.values())


def test_every_operator_metric_carries_the_namespace() -> None:
    """A team's alert or panel selects its own namespace; two same-named objects in two
    namespaces are two series, not one sum. Every family the operator exports has the label,
    and a sample of each, in two namespaces, keeps them apart."""
    from prometheus_client import REGISTRY

    metrics = _operator_metrics()
    assert len(metrics) >= 4
    for metric in metrics:
        names = metric._labelnames  # prometheus_client has no public accessor
        assert "namespace" in names, metric
        for namespace in ("team-a", "team-b"):
            labels = {n: namespace if n == "namespace" else "same-name" for n in names}
            child = metric.labels(**labels)
            if hasattr(child, "observe"):
                child.observe(0.1)
            else:
                child.inc()
    families = {m.name: m for m in REGISTRY.collect() if m.name.startswith("kubeloop_")}
    for metric in metrics:
        family = families[metric._name]
        other = next(n for n in metric._labelnames if n != "namespace")
        namespaces = {
            s.labels["namespace"] for s in family.samples if s.labels.get(other) == "same-name"
        }
        assert namespaces == {"team-a", "team-b"}, family.name


def test_the_dashboard_filters_every_per_namespace_query_by_its_namespace_variable() -> None:
    """Two teams' models or pipelines of one name stay apart: a $namespace variable (from every
    kubeloop series), every query of a namespaced metric filtered by it and grouped by it."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["namespace"]["query"]["query"] == (
        'label_values({__name__=~"kubeloop_.*"}, namespace)'
    )
    for name in ("pipeline", "model", "monitor"):  # their choices follow the namespaces chosen
        assert '{namespace=~"$namespace"}' in variables[name]["query"]["query"]
    selector = re.compile(r"(kubeloop_[a-z_]+)(\{[^}]*\})?")
    queries = {k: v for k, v in _dashboard_queries().items() if k.startswith("panel ")}
    checked = 0
    for where, expr in queries.items():
        for _name, matchers in selector.findall(expr):
            assert 'namespace=~"$namespace"' in matchers, (where, expr)
            checked += 1
        for by in re.findall(r"sum by \(([^)]*)\)", expr):
            assert "namespace" in by.split(", ") or "kind" in by, (where, expr)
    assert checked >= 14
