"""Building blocks shared by the three kinds: base model, references, conditions, field types.

Every field carries a description: they become the text `kubectl explain` prints.
"""

from __future__ import annotations

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
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "CONDITION_REASON_PATTERN",
    "CRON_PATTERN",
    "DNS_LABEL_PATTERN",
    "DURATION_PATTERN",
    "URI_PATTERN",
    "CelRule",
    "Condition",
    "CronSchedule",
    "Duration",
    "KubeModel",
    "LocalObjectReference",
    "ObjectStoreUri",
    "Quantity",
    "ResourceName",
    "SecretReference",
    "Toleration",
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
                raise ValueError(rule.failure(self))
        return self

    def to_wire(self) -> dict[str, Any]:
        """The model as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


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

# One cron field: `*`, numbers, ranges, steps, lists, month/day names.
_CRON_ATOM = r"(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?"
_CRON_FIELD = rf"{_CRON_ATOM}(,{_CRON_ATOM})*"
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|hourly)|"
    rf"{_CRON_FIELD} {_CRON_FIELD} {_CRON_FIELD} {_CRON_FIELD} {_CRON_FIELD})$"
)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
URI_PATTERN = r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?|file://.+)$"
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d))+$"
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _check_cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(
            f"{value!r} is not a valid 5-field cron expression "
            "(minute hour day-of-month month day-of-week, e.g. '0 3 * * 0')"
        )
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


def _check_duration(value: str) -> str:
    if parse_duration(value) <= timedelta(0):
        raise ValueError(f"{value!r} must be longer than zero")
    return value


def _quantity_to_str(value: object) -> object:
    # YAML users write `cpu: 2`; Kubernetes quantities are int-or-string.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


CronSchedule = Annotated[
    str,
    Field(pattern=CRON_PATTERN, max_length=128),
    AfterValidator(_check_cron),
]
Duration = Annotated[
    str, Field(pattern=DURATION_PATTERN, max_length=32), AfterValidator(_check_duration)
]
ObjectStoreUri = Annotated[str, Field(pattern=URI_PATTERN, max_length=1024)]
ResourceName = Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, min_length=1, max_length=253)]
Quantity = Annotated[
    str,
    BeforeValidator(_quantity_to_str),
    Field(pattern=QUANTITY_PATTERN),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
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


class Toleration(KubeModel):
    """A Kubernetes toleration, copied as is onto the pods (see core/v1 Toleration)."""

    key: str | None = Field(default=None, max_length=317, description="Taint key to tolerate.")
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal", description="`Exists` matches any value; `Equal` matches `value`."
    )
    value: str | None = Field(default=None, max_length=63, description="Taint value to match.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None,
        ge=0,
        description="For NoExecute: how long the pod stays bound after the taint appears.",
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
