"""A synthetic customer-churn dataset: numeric + categorical features, a baseline and a shift.

The label depends on the features through a fixed logistic model, so a classifier learns it
(ROC AUC well above the examples' 0.75 gate). `shift=True` draws the population a drift
monitor must flag: shorter tenure, higher charges, more support calls, more month-to-month
contracts and electronic checks. Deterministic for a seed. Written as Parquet with pyarrow.

`digits_table` is the image example's data (examples/byo/digits): scikit-learn's bundled 8x8
digits (no download) as 64 pixel columns, each draw with its own pixel noise; `shift=True` is
the same digits from a washed-out scanner (lower contrast, a grey floor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "CATEGORICAL",
    "FEATURES",
    "NUMERIC",
    "TARGET",
    "churn_labels",
    "churn_logit",
    "churn_table",
    "digits_table",
    "write_churn",
    "write_demo_data",
]

NUMERIC = ["tenure", "monthly_charges", "total_charges", "support_calls"]
CATEGORICAL = ["contract", "payment_method"]
FEATURES = [*NUMERIC, *CATEGORICAL]
TARGET = "churned"
CONTRACTS = ["month-to-month", "one-year", "two-year"]
PAYMENTS = ["electronic-check", "mailed-check", "bank-transfer", "credit-card"]


def churn_table(rows: int, *, seed: int = 0, shift: bool = False) -> pa.Table:
    """`rows` customers with the six features of examples/churn-pipeline.yaml and `churned`."""
    rng = np.random.default_rng(seed)
    if shift:
        tenure = rng.gamma(1.2, 8.0, rows)
        monthly = rng.normal(95.0, 18.0, rows)
        calls = rng.poisson(3.5, rows)
        contract_p, payment_p = [0.8, 0.15, 0.05], [0.6, 0.15, 0.15, 0.1]
    else:
        tenure = rng.gamma(2.0, 14.0, rows)
        monthly = rng.normal(65.0, 20.0, rows)
        calls = rng.poisson(1.2, rows)
        contract_p, payment_p = [0.45, 0.3, 0.25], [0.3, 0.2, 0.25, 0.25]
    tenure = np.clip(tenure, 0, 72).round(0)
    monthly = np.clip(monthly, 18, 130).round(2)
    total = (tenure * monthly * rng.uniform(0.9, 1.05, rows)).round(2)
    contract = rng.choice(CONTRACTS, rows, p=contract_p)
    payment = rng.choice(PAYMENTS, rows, p=payment_p)
    logit = churn_logit(tenure, monthly, calls, contract, payment)
    churned = rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))
    return pa.table(
        {
            "tenure": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": calls.astype(np.int64),
            "contract": contract.astype(str),
            "payment_method": payment.astype(str),
            TARGET: churned.astype(np.int64),
        }
    )


def churn_logit(
    tenure: npt.NDArray[Any],
    monthly: npt.NDArray[Any],
    calls: npt.NDArray[Any],
    contract: npt.NDArray[Any],
    payment: npt.NDArray[Any],
) -> npt.NDArray[np.float64]:
    """The label relation: log-odds of churning, from the features."""
    return np.asarray(
        -1.0
        - 0.06 * tenure
        + 0.025 * (monthly - 65)
        + 0.45 * calls
        + np.where(contract == "month-to-month", 1.3, np.where(contract == "one-year", 0.0, -1.2))
        + np.where(payment == "electronic-check", 0.6, 0.0),
        np.float64,
    )


def churn_labels(features: pa.Table, *, seed: int = 0, flip: bool = False) -> pa.Array:
    """True `churned` labels (int64) of the customers in `features`, drawn from the label
    relation of `churn_table`, or with `flip` from its opposite (concept drift: the same
    inputs, the relation to the label reversed)."""
    column = {n: features.column(n).to_numpy(zero_copy_only=False) for n in FEATURES}
    logit = churn_logit(
        column["tenure"],
        column["monthly_charges"],
        column["support_calls"],
        column["contract"].astype(str),
        column["payment_method"].astype(str),
    )
    if flip:
        logit = -logit
    draw = np.random.default_rng(seed).uniform(size=features.num_rows)
    return pa.array((draw < 1 / (1 + np.exp(-logit))).astype(np.int64))


def digits_table(*, seed: int = 0, shift: bool = False, rows: int | None = None) -> pa.Table:
    """`rows` digits (default all 1797) in a seeded order: px0..px63 (0..16) and `label`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))[:rows]
    pixels = digits.data[order] + rng.normal(0.0, 0.5, (len(order), 64))
    if shift:
        pixels = pixels * 0.6 + 5.0
    pixels = np.clip(pixels, 0.0, 16.0)
    columns = {f"px{i}": pa.array(pixels[:, i]) for i in range(64)}
    columns["label"] = pa.array(digits.target[order].astype(np.int64))
    return pa.table(columns)


def write_churn(folder: Path, rows: int, *, seed: int = 0, shift: bool = False) -> Path:
    """Write the table as `<folder>/part-0.parquet` (a one-file pyarrow dataset); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-0.parquet"
    pq.write_table(churn_table(rows, seed=seed, shift=shift), path)
    return path


def write_demo_data(root: Path, *, rows: int = 4000, seed: int = 1) -> dict[str, Path]:
    """The demo's files under `root`: `churn/train` (baseline, what v1 trains on), and
    `churn/fresh` (newly labelled rows after the shift: what the retrain reads once copied
    into `churn/train`)."""
    baseline = churn_table(rows, seed=seed)
    shifted = churn_table(rows, seed=seed + 1, shift=True)
    fresh = pa.concat_tables([churn_table(rows // 2, seed=seed + 2), shifted])
    out = {}
    for name, table in (("train", baseline), ("fresh", fresh)):
        folder = root / "churn" / name
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-0.parquet")
        out[name] = folder
    return out


if __name__ == "__main__":
    import sys

    for name, folder in write_demo_data(
        Path(sys.argv[1] if len(sys.argv) > 1 else ".demo/data")
    ).items():
        print(f"{name}: {folder}")
