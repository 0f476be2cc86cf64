"""Building blocks shared by the three kinds: base model, references, conditions, field types.

Every field carries a description: they become the text `kubectl explain` prints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal, Self

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = [
    "CONDITION_REASON_PATTERN",
    "CRON_MESSAGE",
    "CRON_PATTERN",
    "DNS_LABEL_PATTERN",
    "DURATION_PATTERN",
    "LABEL_KEY_PATTERNS",
    "LABEL_VALUE_PATTERN",
    "POSITIVE_DURATION_PATTERN",
    "QUANTITY_PATTERN",
    "URI_PATTERN",
    "Affinity",
    "CelRule",
    "Condition",
    "CronSchedule",
    "Duration",
    "FieldError",
    "KubeModel",
    "LabelKey",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LabelValue",
    "ListSet",
    "LocalObjectReference",
    "Matches",
    "NetworkPolicyPeer",
    "NodeAffinity",
    "NodeSelector",
    "NodeSelectorRequirement",
    "NodeSelectorTerm",
    "ObjectStoreUri",
    "Placement",
    "PodAffinity",
    "PodAffinityTerm",
    "Quantity",
    "RequiredNodeSelector",
    "ResourceName",
    "SecretKeyReference",
    "SecretReference",
    "Toleration",
    "WeightedNodeSelectorTerm",
    "WeightedPodAffinityTerm",
    "WorkloadSecurity",
    "parse_duration",
]


@dataclass(frozen=True)
class CelRule:
    """A cross-field rule, stated once for both layers that enforce it.

    `cel` goes into the CRD as an `x-kubernetes-validations` entry (the API server refuses the
    object at admission); `check` is the same rule in Python (pydantic refuses it in the operator
    and in `kubeloop validate`). Tests evaluate both on every example and invalid sample.
    A message that must name a part of the value (e.g. a list index) is built by
    `message_expression` (CEL) and `explain` (Python); `message` stays the summary.
    """

    cel: str
    check: Callable[[Any], bool]
    message: str
    field_path: str
    reason: str = "FieldValueInvalid"
    message_expression: str = ""
    explain: Callable[[Any], str] | None = None

    def to_schema(self) -> dict[str, str]:
        """The rule as a CRD `x-kubernetes-validations` item."""
        item = {"rule": self.cel, "message": self.message, "reason": self.reason}
        if self.message_expression:
            item["messageExpression"] = self.message_expression
        if self.field_path:  # none for rules on metadata (not part of the CRD's schema)
            item["fieldPath"] = self.field_path
        return item

    def failure(self, value: Any) -> str:
        """The message for a value this rule refuses."""
        return self.explain(value) if self.explain is not None else self.message


def _add_cel_rules(schema: dict[str, Any], cls: type) -> None:
    rules: tuple[CelRule, ...] = getattr(cls, "cel_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.to_schema() for rule in rules]


class KubeModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
        json_schema_extra=_add_cel_rules,
    )
    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cel_rules(self) -> Self:
        for rule in self.cel_rules:
            if not rule.check(self):
                raise FieldError(rule.field_path, rule.failure(self))
        return self

    def to_wire(self, *, set_only: bool = False) -> dict[str, Any]:
        """The model as the API server stores it: camelCase keys, unset optionals left out;
        `set_only`: fields left at their defaults too (what was given, typed)."""
        return self.model_dump(
            by_alias=True, exclude_none=True, exclude_unset=set_only, mode="json"
        )


# --- object names ------------------------------------------------------------------------------

MAX_NAME_LENGTH = 52
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


def _name_ok(resource: Any) -> bool:
    name = (getattr(resource, "metadata", None) or {}).get("name")
    return name is None or (
        len(name) <= MAX_NAME_LENGTH and re.match(NAME_PATTERN, name) is not None
    )


# The operator derives child names from the object's name: Jobs `<name>-run-<n>` (a Job name
# must fit a 63-character label), Services `<name>` (DNS-1035: starts with a letter), CronJobs
# `<name>` (52 characters at most). The API server itself only asks for a DNS subdomain.
NAME_RULE = CelRule(
    cel=(
        f"size(self.metadata.name) <= {MAX_NAME_LENGTH} && "
        f"self.metadata.name.matches('{NAME_PATTERN}')"
    ),
    check=_name_ok,
    message=(
        f"metadata.name must be at most {MAX_NAME_LENGTH} characters of lowercase letters, "
        "digits and '-', starting with a letter and ending with a letter or digit (the operator "
        "names Jobs, Services and CronJobs after it)"
    ),
    field_path="",
)


# --- field types -------------------------------------------------------------------------------

# A 5-field cron as both croniter (the operator's scheduler) and the CronJob controller's parser
# (robfig/cron, which the API server applies to a DriftMonitor's CronJob) accept it: each field
# within its range; `*`, numbers, ranges, steps of at least 1, lists, month and day names.
# No backslashes: the same text is a CEL string literal in the CRD.
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_RANGES = {
    "minute": "[0-5]?[0-9]",
    "hour": "[01]?[0-9]|2[0-3]",
    "dom": "0?[1-9]|[12][0-9]|3[01]",
    "month": f"0?[1-9]|1[0-2]|(?i:{'|'.join(_MONTHS)})",
    "dow": f"0?[0-6]|(?i:{'|'.join(_DAYS)})",
}


def _cron_field(values: str) -> str:
    atom = f"([*]|({values})(-({values}))?)(/[1-9][0-9]*)?"
    return f"{atom}(,{atom})*"


CRON_PATTERN = (
    "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + " ".join(_cron_field(values) for values in _CRON_RANGES.values())
    + ")$"
)
CRON_MESSAGE = (
    "must be a 5-field cron (UTC): minute 0-59, hour 0-23, day of month 1-31, month 1-12 or "
    "jan-dec, day of week 0-6 or sun-sat; with *, a-b, */n and lists, e.g. '0 3 * * 0'; "
    "or @hourly, @daily, @weekly, @monthly, @yearly"
)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
URI_PATTERN = r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?|file://.+)$"
# At most 6 significant digits a number: a longer one overflows timedelta (a crash, not an error).
_DURATION_TERM = "0*[0-9]{1,6}(ms|s|m|h|d)"
DURATION_PATTERN = f"^({_DURATION_TERM})+$"
POSITIVE_DURATION_PATTERN = (
    f"^({_DURATION_TERM})*0*[1-9][0-9]{{0,5}}(ms|s|m|h|d)({_DURATION_TERM})*$"
)
DURATION_MESSAGE = (
    "must be a duration longer than zero: whole numbers (at most 6 digits) with units ms, s, m, "
    "h or d, e.g. '24h', '90m', '1h30m', '7d'"
)
# The official Kubernetes quantity syntax without a sign: a negative request or limit is
# refused by the API server when the Job or Deployment is created, long after admission.
QUANTITY_PATTERN = (
    "^[+]?(([0-9]+([.][0-9]*)?)|([.][0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    "([eE][-+]?(([0-9]+([.][0-9]*)?)|([.][0-9]+))))?$"
)
QUANTITY_MESSAGE = (
    "must be a Kubernetes quantity of at least zero: a whole number, or a string such as "
    "'500m', '0.5', '2' or '4Gi'"
)
# Label keys and values as the API server checks them in a pod's nodeSelector (and a
# toleration's key and value): a key is an optional DNS-subdomain prefix (253 at most) and '/',
# then a name of 63 at most; the second pattern carries the lengths a single RE2 cannot.
LABEL_KEY_PATTERNS = (
    "^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
    "^([^/]{1,253}/)?[^/]{1,63}$",
)
LABEL_KEY_MESSAGE = (
    "must be a label key: an optional DNS-subdomain prefix and '/', then a name of at most 63 "
    "letters, digits, '-', '_' or '.', starting and ending with a letter or digit, "
    "e.g. 'kubernetes.io/arch' or 'gpu'"
)
LABEL_VALUE_PATTERN = "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
LABEL_VALUE_MESSAGE = (
    "must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending "
    "with a letter or digit (or empty)"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_CRON_NAMES = {name: number + 1 for number, name in enumerate(_MONTHS)} | {
    name: number for number, name in enumerate(_DAYS)
}


class FieldError(ValueError):
    """A refusal about a part of the value being validated: pydantic reports it at the value's
    location, and `kubeloop.api.parse` appends `subpath` (`.value`, `[2]`) to name the part."""

    def __init__(self, subpath: str, message: str) -> None:
        super().__init__(message)
        self.subpath = subpath


@dataclass(frozen=True)
class Matches:
    """Regular expressions a string, or every key of a map, must match, with the message a
    person reads when it does not; stated once for both layers.

    In the CRD it is a CEL rule, `self.matches(...)`, or `self.all(k, k.matches(...))` for the
    keys of a map, which a structural schema cannot constrain; unlike a schema `pattern`, whose
    refusal quotes the whole expression, the API server then answers with `message`. In pydantic
    it is an after-validator with the same expressions and message. Patterns are written
    without backslashes or quotes: the same text is a CEL string literal.
    """

    patterns: tuple[str, ...]
    message: str
    keys: bool = False

    def __post_init__(self) -> None:
        for pattern in self.patterns:
            if "\\" in pattern or "'" in pattern:
                raise ValueError(f"{pattern!r}: write it without backslashes or quotes")

    def cel(self) -> str:
        """The CEL expression of the rule."""
        subject = "k" if self.keys else "self"
        test = " && ".join(f"{subject}.matches('{pattern}')" for pattern in self.patterns)
        return f"self.all(k, {test})" if self.keys else test

    def check(self, value: Any) -> Any:
        """The rule in Python (CEL's `matches` is an unanchored RE2 search, as `re.search`)."""
        for item in value if self.keys else (value,):
            if not all(re.search(pattern, item) for pattern in self.patterns):
                key = f" (key {item[:80]!r})" if self.keys else ""
                raise ValueError(self.message + key)
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault("x-kubernetes-validations", []).append(
            {"rule": self.cel(), "message": self.message, "reason": "FieldValueInvalid"}
        )
        return json_schema


@dataclass(frozen=True)
class ListSet:
    """A list of scalars the API server treats as a set (`x-kubernetes-list-type: set`): it
    refuses a duplicate (`spec.data.features[2]: Duplicate value: "x"`), and so does pydantic."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_no_duplicates, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["x-kubernetes-list-type"] = "set"
        return json_schema


def _no_duplicates(items: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    for index, item in enumerate(items):
        if item in seen:
            raise FieldError(f"[{index}]", f"Duplicate value: {json.dumps(item)}")
        seen.add(item)
    return items


def _cron_number(text: str) -> int:
    return _CRON_NAMES[text.lower()] if text.isalpha() else int(text)


def _check_cron(value: str) -> str:
    # The pattern has checked each field's range. What it cannot see: a range that runs
    # backwards, which croniter wraps around but the CronJob controller's parser refuses.
    for low, high in re.findall(r"([0-9A-Za-z]+)-([0-9A-Za-z]+)", value):
        if _cron_number(low) > _cron_number(high):
            raise ValueError(
                f"the range {low}-{high} in {value!r} runs backwards; list both parts "
                f"instead (e.g. '{low}-<last>,<first>-{high}')"
            )
    if not croniter.is_valid(value):
        raise ValueError(f"{value!r} {CRON_MESSAGE}")
    return value


def parse_duration(value: str) -> timedelta:
    """Parse a duration such as ``24h``, ``90m`` or ``1h30m`` (units ms, s, m, h, d)."""
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"{value!r} is not a duration; use e.g. '24h', '90m', '1h30m', '7d'")
    seconds = sum(
        int(number) * _DURATION_UNITS[unit]
        for number, unit in re.findall(r"([0-9]+)(ms|s|m|h|d)", value)
    )
    return timedelta(seconds=seconds)


def _quantity_to_str(value: object) -> object:
    # YAML users write `cpu: 2`; Kubernetes quantities are int-or-string. Not a float: the
    # API server refuses `cpu: 0.5` (neither integer nor string), so the operator does too.
    if isinstance(value, float):
        raise ValueError(
            f"{value} is a number with a fraction, which the API server refuses here; "
            f"quote it ('{value}') or write it in thousandths ('{value * 1000:g}m')"
        )
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _check_quantity(value: str) -> str:
    if not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(QUANTITY_MESSAGE)
    return value


CronSchedule = Annotated[
    str,
    Field(max_length=128),
    Matches((CRON_PATTERN,), CRON_MESSAGE),
    AfterValidator(_check_cron),
]
Duration = Annotated[
    str, Field(max_length=32), Matches((POSITIVE_DURATION_PATTERN,), DURATION_MESSAGE)
]
ObjectStoreUri = Annotated[str, Field(pattern=URI_PATTERN, max_length=1024)]
ResourceName = Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, min_length=1, max_length=253)]
Quantity = Annotated[
    str,
    BeforeValidator(_quantity_to_str),
    AfterValidator(_check_quantity),
    # The CRD says the same with `pattern` (strings) and `minimum` (integers): CEL over an
    # int-or-string value would need a type switch; a pattern works on every API server.
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "minimum": 0,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
LabelValue = Annotated[
    str, Field(max_length=63), Matches((LABEL_VALUE_PATTERN,), LABEL_VALUE_MESSAGE)
]
NodeSelector = Annotated[
    dict[str, LabelValue],
    Field(max_length=64),
    Matches(LABEL_KEY_PATTERNS, "every key " + LABEL_KEY_MESSAGE, keys=True),
]


# --- references ---------------------------------------------------------------------------------


class LocalObjectReference(KubeModel):
    """A reference to an object of a known kind in the same namespace."""

    name: ResourceName = Field(description="Name of the referenced object in this namespace.")


class SecretReference(KubeModel):
    """A Secret in the same namespace holding object-store credentials.

    The Secret is expected to hold the keys `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
    (optionally `AWS_SESSION_TOKEN`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`). Pods receive
    them by `secretKeyRef`; the operator never reads or copies the values.
    """

    name: ResourceName = Field(description="Name of the Secret in this namespace.")


class SecretKeyReference(KubeModel):
    """One key of a Secret in the same namespace. Pods receive it by `secretKeyRef`; the
    operator never reads or copies the value."""

    name: ResourceName = Field(description="Name of the Secret in this namespace.")
    key: str = Field(
        pattern=r"^[-._a-zA-Z0-9]+$",
        min_length=1,
        max_length=253,
        description="Key in the Secret's data whose value is used.",
    )


LabelKey = Annotated[str, Field(max_length=317), Matches(LABEL_KEY_PATTERNS, LABEL_KEY_MESSAGE)]


def _values_fit_operator(requirement: Any) -> bool:
    values, operator = requirement.values, requirement.operator
    if operator in ("In", "NotIn"):
        return bool(values)
    if operator in ("Gt", "Lt"):
        return len(values) == 1 and re.fullmatch("-?[0-9]+", values[0]) is not None
    return not values


# The rule the API server applies to a requirement's values, stated once for both kinds.
_VALUES_RULE = CelRule(
    cel=(
        "(self.operator in ['In', 'NotIn']) ? (has(self.values) && size(self.values) > 0) : "
        "(self.operator in ['Gt', 'Lt']) ? (has(self.values) && size(self.values) == 1 && "
        "self.values[0].matches('^-?[0-9]+$')) : (!has(self.values) || size(self.values) == 0)"
    ),
    check=_values_fit_operator,
    message="In and NotIn need at least one value; Gt and Lt exactly one integer; Exists and "
    "DoesNotExist none",
    field_path=".values",
)


class LabelSelectorRequirement(KubeModel):
    """One condition on a label of the selected objects (core/v1 LabelSelectorRequirement)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (_VALUES_RULE,)

    key: LabelKey = Field(description="The label key the condition is about.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the label's value relates to `values`."
    )
    values: Annotated[list[LabelValue], ListSet()] = Field(
        default_factory=list,
        max_length=64,
        description="Values for In and NotIn (at least one); empty for Exists and DoesNotExist.",
    )


class LabelSelector(KubeModel):
    """Objects whose labels include all of `matchLabels` and meet every `matchExpressions`
    condition; empty selects every object."""

    match_labels: NodeSelector = Field(
        default_factory=dict, description="Labels (keys and values) the objects must all carry."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=32, description="Conditions on labels the objects must all meet."
    )


class NetworkPolicyPeer(KubeModel):
    """Pods allowed to connect, as in a NetworkPolicy's `from`: pods matching `podSelector`
    in namespaces matching `namespaceSelector`. Only `namespaceSelector`: every pod of those
    namespaces; only `podSelector`: those pods in the resource's own namespace."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="has(self.namespaceSelector) || has(self.podSelector)",
            check=lambda p: p.namespace_selector is not None or p.pod_selector is not None,
            message="set namespaceSelector, podSelector or both ({} selects everything)",
            field_path=".podSelector",
            reason="FieldValueRequired",
        ),
    )

    namespace_selector: LabelSelector | None = Field(
        default=None, description="Namespaces whose pods may connect; {}: every namespace."
    )
    pod_selector: LabelSelector | None = Field(
        default=None, description="Pods that may connect; {}: every pod of those namespaces."
    )


class Toleration(KubeModel):
    """A Kubernetes toleration, copied as is onto the pods (see core/v1 Toleration).

    The rules are those the API server applies to a pod's tolerations, so a toleration it would
    refuse in the Job is refused here, at admission, naming the field.
    """

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            cel="self.operator == 'Exists' || (has(self.key) && size(self.key) > 0)",
            check=lambda t: t.operator == "Exists" or bool(t.key),
            message="must be 'Exists' when key is empty (an empty key with Exists tolerates "
            "every taint)",
            field_path=".operator",
        ),
        CelRule(
            cel="self.operator != 'Exists' || !has(self.value) || size(self.value) == 0",
            check=lambda t: t.operator != "Exists" or not t.value,
            message="must be empty when operator is 'Exists' (Exists matches every value of the "
            "key); use operator 'Equal' to match one value",
            field_path=".value",
        ),
        CelRule(
            cel="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            check=lambda t: t.toleration_seconds is None or t.effect == "NoExecute",
            message="must be 'NoExecute' when tolerationSeconds is set",
            field_path=".effect",
        ),
    )

    key: Annotated[str, Matches(LABEL_KEY_PATTERNS, LABEL_KEY_MESSAGE)] | None = Field(
        default=None,
        max_length=317,
        description="Taint key to tolerate; empty with operator Exists tolerates every taint.",
    )
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal", description="`Exists` matches any value; `Equal` matches `value`."
    )
    value: LabelValue | None = Field(default=None, description="Taint value to match.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None,
        ge=0,
        description="For NoExecute: how long the pod stays bound after the taint appears.",
    )


class NodeSelectorRequirement(KubeModel):
    """One condition on a label (or, under `matchFields`, a field) of a node."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (_VALUES_RULE,)

    key: LabelKey = Field(description="The node label key (or field, e.g. metadata.name).")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        description="How the node's value relates to `values`."
    )
    values: Annotated[list[Annotated[str, Field(max_length=253)]], ListSet()] = Field(
        default_factory=list,
        max_length=64,
        description="Values for In and NotIn (at least one); one integer for Gt and Lt; none "
        "for Exists and DoesNotExist.",
    )


class NodeSelectorTerm(KubeModel):
    """Nodes meeting every condition of the term."""

    match_expressions: list[NodeSelectorRequirement] | None = Field(
        default=None, max_length=32, description="Conditions on the node's labels."
    )
    match_fields: list[NodeSelectorRequirement] | None = Field(
        default=None, max_length=32, description="Conditions on the node's fields."
    )


class RequiredNodeSelector(KubeModel):
    """Nodes the pods must run on: those meeting any one of the terms."""

    node_selector_terms: list[NodeSelectorTerm] = Field(
        min_length=1, max_length=32, description="Terms, ORed."
    )


class WeightedNodeSelectorTerm(KubeModel):
    """Nodes the scheduler prefers, with how much."""

    weight: int = Field(ge=1, le=100, description="How much a matching node is preferred, 1-100.")
    preference: NodeSelectorTerm = Field(description="The nodes preferred.")


class NodeAffinity(KubeModel):
    """Which nodes the pods may or should run on (core/v1 NodeAffinity)."""

    required_during_scheduling_ignored_during_execution: RequiredNodeSelector | None = Field(
        default=None, description="Nodes the pods must run on."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedNodeSelectorTerm] | None = (
        Field(default=None, max_length=32, description="Nodes the scheduler prefers.")
    )


class PodAffinityTerm(KubeModel):
    """Pods (by labels, in namespaces) whose nodes, grouped by `topologyKey`, count."""

    label_selector: LabelSelector | None = Field(default=None, description="The pods; unset: none.")
    namespaces: Annotated[list[ResourceName], ListSet()] | None = Field(
        default=None, max_length=64, description="Their namespaces; unset: the pod's own."
    )
    namespace_selector: LabelSelector | None = Field(
        default=None, description="Their namespaces by label, in addition to `namespaces`."
    )
    topology_key: LabelKey = Field(
        description="Node label whose value groups nodes, e.g. kubernetes.io/hostname."
    )


class WeightedPodAffinityTerm(KubeModel):
    """A pod affinity term the scheduler prefers, with how much."""

    weight: int = Field(ge=1, le=100, description="How much a matching node is preferred, 1-100.")
    pod_affinity_term: PodAffinityTerm = Field(description="The term.")


class PodAffinity(KubeModel):
    """Other pods to run near (podAffinity) or away from (podAntiAffinity)."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = Field(
        default=None, max_length=32, description="Terms that must all hold."
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = (
        Field(default=None, max_length=32, description="Terms the scheduler prefers.")
    )


class Affinity(KubeModel):
    """Node affinity, pod affinity and pod anti-affinity, as in a pod's `affinity`."""

    node_affinity: NodeAffinity | None = Field(default=None, description="Which nodes.")
    pod_affinity: PodAffinity | None = Field(default=None, description="Near which pods.")
    pod_anti_affinity: PodAffinity | None = Field(default=None, description="Away from which pods.")


class Placement(KubeModel):
    """Where a resource's pods may run. Each field, when set, wins over the operator's default
    for workload pods (the chart's `workloadPods`); a nodeSelector merges with it key by key."""

    node_selector: NodeSelector = Field(
        default_factory=dict, description="Node labels the pods must match (label keys and values)."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=32,
        description="Taints the pods tolerate; when set, instead of the operator's default ones.",
    )
    priority_class_name: ResourceName | None = Field(
        default=None, description="PriorityClass of the pods; default: the operator's."
    )
    affinity: Affinity | None = Field(
        default=None,
        description="Node and pod (anti-)affinity of the pods (core/v1 Affinity); when set, "
        "instead of the operator's default affinity as a whole.",
    )


class WorkloadSecurity(KubeModel):
    """The ids every workload pod runs as: the operator's setting (the chart's
    `workloadPods.securityContext`), not part of any resource. `null` leaves the field out, for
    platforms that assign ids themselves (OpenShift's restricted-v2 SCC); the rest of the
    restricted securityContext is not configurable."""

    run_as_user: int | None = Field(
        default=65532,
        ge=1,
        le=2147483647,
        description="UID of every container; null: the platform's.",
    )
    run_as_group: int | None = Field(
        default=65532, ge=0, le=2147483647, description="Primary GID; null: the platform's."
    )
    fs_group: int | None = Field(
        default=65532,
        ge=0,
        le=2147483647,
        description="GID owning the volumes; null: the platform's.",
    )


# --- status -------------------------------------------------------------------------------------


class Condition(KubeModel):
    """One aspect of the object's state, following the Kubernetes API conventions."""

    type: str = Field(
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        max_length=316,
        description="Type of the condition in CamelCase, e.g. Ready, Running, DriftDetected.",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        pattern=CONDITION_REASON_PATTERN,
        max_length=1024,
        min_length=1,
        description="A CamelCase word saying why the condition last changed.",
    )
    message: str = Field(
        default="", max_length=32768, description="A sentence a person can act on."
    )
    last_transition_time: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When the status last changed (RFC 3339).",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition was set from."
    )
