"""Decisions of the operator, as pure functions: observed state in, what to do out.

Each module decides one thing over typed inputs (the pydantic specs of kubeloop.api, the status
a resource holds, the children observed) and returns a typed decision, with the Events to post
(`EventIntent`). Nothing here calls the API, reads the clock or posts an Event: the controllers
observe, call these functions, and act on what they return. So every decision is table-tested
without kopf or a client (tests/decide/); an import-linter contract keeps it that way.

- gate: may a run's new version become the champion?
- triggers: which pending trigger starts a run now, and what the allocation records;
- schedule: the cron tick due at a given time, and a tick skipped because the data is unchanged;
- resolve: the version a ModelDeployment serves (uri, version, alias, champion, latest);
- serving: what a serving Deployment says (its version, rolled out, stuck);
- canary: the rollout plan: rolling update, canary start, step, promotion, rollback;
- retrain: one retrain request per drift episode (held while the feed looks broken);
- quality: the data-quality verdict from counted values and thresholds, its status and
  condition, and whether it holds a retrain;
- lease: leader election among operator replicas: create, take, renew or wait on the Lease,
  and when a leader must stop acting.
"""

from __future__ import annotations

from kubeloop.decide.events import EventIntent

__all__ = ["EventIntent"]
