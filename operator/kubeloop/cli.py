"""The `kubeloop` command. Each verb lives in its own module, imported only when used,
so the operator image never imports torch and the trainer never imports kopf."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

__all__ = ["OPERATOR_ONLY", "main"]

# verb -> module with `main(argv: list[str]) -> int`
VERBS = {
    "operator": ("kubeloop.controller.main", "run the operator (kopf)"),
    "train": ("kubeloop.workloads.trainer.main", "train a model version (what the Job runs)"),
    "serve": ("kubeloop.workloads.server.main", "serve a model version over V2 (what pods run)"),
    "monitor": ("kubeloop.workloads.monitor.main", "check drift once (what the CronJob runs)"),
    "fingerprint": (
        "kubeloop.workloads.datawatch",
        "fingerprint a pipeline's training data by listing it (what the data-watch CronJob runs)",
    ),
    "local": ("kubeloop.local.main", "run the whole loop on this machine, no cluster"),
    "versions": ("kubeloop.registrycli.versions", "list a pipeline's model versions (registry)"),
    "compare": ("kubeloop.registrycli.compare", "compare two model versions side by side"),
    "trials": ("kubeloop.registrycli.trials", "list the search trials behind a model version"),
    "registry": (
        "kubeloop.workloads.registryjob",
        "verify a version and point an alias at it, or read what the registry holds (what a "
        "registry Job runs)",
    ),
}


# What a verb's native libraries must find in the environment before they load (a container's
# own setting wins). The monitor's numpy work is vector arithmetic: the one dot product it
# reaches (profiling the model's outputs) woke OpenBLAS's worker threads, which then spin-waited
# on every core for CPU the check never used. Arrow's allocator (mimalloc) handed the pages of
# each batch's freed buffers back to the kernel 10 ms after their free (madvise: a TLB shootdown
# on every core the check's threads ran on) and faulted them in again for the next batch:
# hundreds of purges and 15,000 more page faults per check at 1M rows. Held 250 ms, they are
# reused by the next batches, and still handed back when the check stops needing them (peak
# RSS +5 %; never purging would be +10 %).
VERB_ENV = {"monitor": {"OPENBLAS_NUM_THREADS": "1", "MIMALLOC_PURGE_DELAY": "250"}}


def _crds(argv: list[str]) -> int:
    from kubeloop.api.crd import render_crds
    from kubeloop.api.reference import render_reference

    parser = argparse.ArgumentParser(prog="kubeloop crds", description="Write the CRD YAML files.")
    parser.add_argument("--out", type=Path, default=Path("crds"), help="folder (default: crds)")
    parser.add_argument("--docs", type=Path, default=Path("docs/api.md"), help="API reference")
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    stale = []
    outputs = {args.out / name: text for name, text in render_crds().items()}
    outputs[args.docs] = render_reference()
    for path, text in outputs.items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("stale CRDs (run `make crds`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


# Said of a refusal that only the operator makes: every rule should also be in the CRD, and a
# test holds the invalid corpus to that, but the CRD cannot express them all.
OPERATOR_ONLY = (
    "[not checked by the API server, which admits this; the operator refuses it with "
    "Ready=False, reason InvalidSpec]"
)


def _validate(argv: list[str]) -> int:
    import yaml

    from kubeloop.api.admission import admit
    from kubeloop.api.parse import SpecError, parse_resource

    parser = argparse.ArgumentParser(
        prog="kubeloop validate",
        description="Check custom resources offline as the API server and the operator would.",
    )
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = 0
    for path in args.files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            result = admit(doc)
            errors = list(result.errors)
            if result.allowed:
                try:
                    parse_resource(result.obj)
                except SpecError as exc:
                    errors += [f"{message} {OPERATOR_ONLY}" for message in exc.messages]
            if errors:
                failed += 1
                print(f"{path}: {name} is invalid:")
                for error in errors:
                    print(f"  - {error}")
            else:
                print(f"{path}: {name} ok")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `kubeloop` console script."""
    argv = sys.argv[1:] if argv is None else argv
    local = {"crds": (_crds, "generate the CRDs"), "validate": (_validate, "check CRs offline")}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in {*VERBS, *local}:
        print("usage: kubeloop <verb> [options]\n\nverbs:")
        for verb, (_, help_text) in {**VERBS, **local}.items():
            print(f"  {verb:<10} {help_text}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    verb, rest = argv[0], argv[1:]
    if verb in local:
        return local[verb][0](rest)
    for name, value in VERB_ENV.get(verb, {}).items():
        os.environ.setdefault(name, value)
    module = importlib.import_module(VERBS[verb][0])
    code: int = module.main(rest)
    return code


if __name__ == "__main__":
    sys.exit(main())
