"""What a benchmark records: the machine it ran on, its raw results and its summary."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "write_results"]

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_results(run: dict[str, Any], results: Path, summary: Path, text: str | None) -> None:
    """The raw JSON (bench/results/, git-ignored) and, unless `text` is None, the summary."""
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(run, indent=2, default=str))
    if text is not None:
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(text)
    print(f"wrote {results.relative_to(ROOT)}" + ("" if text is None else f" and {summary}"))
