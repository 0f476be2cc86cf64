"""`python -m bench [topic ...]`: run the benchmarks, one at a time, then rebuild BENCHMARKS.md.

A topic is a module `bench/<topic>_bench.py` with `main(argv: list[str] | None = None) -> int`.
No topic: every one found. `--list` names them; `--index` only rebuilds BENCHMARKS.md from the
committed summaries in docs/benchmarks/<topic>.md, whose line starting with `Headline:` is
copied into the index (the ratio a reader looks for first).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

__all__ = ["build_index", "discover", "main"]

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DOCS = ROOT / "docs" / "benchmarks"
INDEX = ROOT / "BENCHMARKS.md"
SUFFIX = "_bench.py"


def discover() -> list[str]:
    """Topics with a bench/<topic>_bench.py module, sorted."""
    return sorted(p.name[: -len(SUFFIX)] for p in BENCH.glob(f"*{SUFFIX}"))


def _headline(doc: Path) -> str:
    for line in doc.read_text().splitlines():
        if line.startswith("Headline:"):
            return line[len("Headline:") :].strip()
    return "no headline yet (the summary has no `Headline:` line)"


def build_index() -> str:
    """BENCHMARKS.md: one line per topic, its headline, a link to its summary."""
    lines = [
        "# Benchmarks",
        "",
        "Each benchmark runs Kubeloop and its peer side by side in one run on the same machine;",
        "speed claims are ratios from those runs, never absolute numbers from unit tests.",
        "Run them all with `make bench-venvs bench` (or `python -m bench [topic ...]`); each",
        "summary below says what was run, on which machine, with the exact command.",
        "",
        "| topic | headline | summary |",
        "| --- | --- | --- |",
    ]
    topics = sorted(set(discover()) | {p.stem for p in DOCS.glob("*.md")})
    for topic in topics:
        doc = DOCS / f"{topic}.md"
        if doc.exists():
            link = f"[docs/benchmarks/{topic}.md]({doc.relative_to(ROOT)})"
            lines.append(f"| {topic} | {_headline(doc)} | {link} |")
        else:
            lines.append(f"| {topic} | not run yet: `python -m bench {topic}` | - |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the named topics (default: all), then rebuild the index; the worst exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("topics", nargs="*", help="topics to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the topics and exit")
    parser.add_argument("--index", action="store_true", help="only rebuild BENCHMARKS.md")
    args = parser.parse_args(argv)
    found = discover()
    if args.list:
        print("\n".join(found))
        return 0
    unknown = [t for t in args.topics if t not in found]
    if unknown:
        parser.error(f"unknown topics {unknown}; found: {', '.join(found)}")
    status = 0
    for topic in [] if args.index else (args.topics or found):
        print(f"## bench {topic}", flush=True)
        started = time.monotonic()
        try:
            module = importlib.import_module(f"bench.{topic}_bench")
            rc = int(module.main([]) or 0)
        except Exception:  # one broken benchmark must not hide the others' results
            traceback.print_exc()
            rc = 1
        print(f"## bench {topic}: exit {rc} in {time.monotonic() - started:.0f} s", flush=True)
        status = max(status, rc)
    INDEX.write_text(build_index())
    print(f"wrote {INDEX.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
