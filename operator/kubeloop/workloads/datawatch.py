"""`kubeloop fingerprint`: what a pipeline's data-watch CronJob runs (spec.dataTrigger).

    kubeloop fingerprint [--spec FILE] [--result-path P]    (else the spec from KUBELOOP_SPEC)

It LISTS the pipeline's training (and validation) Parquet files, reading none of them on S3
(the listing's keys, sizes and ETags), and computes the fingerprint a run of the same data
records in its version (`kubeloop.workloads.trainer.data.fingerprint`); on file:// the change
marker is the MD5 of each file's bytes, so identical bytes rewritten keep the fingerprint. The
result is left in the termination message for the operator, which starts a `NewData` run when
the fingerprint differs from the one the latest run trained on:

    {"kind": "DataFingerprint", "ok": true, "fingerprint": "sha256:...", "files": n, "bytes": n}
    {"kind": "DataFingerprint", "ok": false, "reason": "...", "message": "..."}

Exit codes are the trainer's (kubeloop.workloads.trainer.errors): 0 ok, 1 internal error,
10 invalid spec, 20-25 data (DataNotFound: no Parquet file), 30-33 storage.
"""

from __future__ import annotations

import argparse
import logging
import traceback
from typing import Any

from kubeloop.workloads.logsetup import configure_logging
from kubeloop.workloads.result import write_result
from kubeloop.workloads.trainer.data import data_files, fingerprint
from kubeloop.workloads.trainer.errors import EXIT_CODES, TrainingError
from kubeloop.workloads.trainer.main import load_spec

__all__ = ["RESULT_KIND", "main", "measure"]

RESULT_KIND = "DataFingerprint"
log = logging.getLogger("kubeloop.fingerprint")


def measure(spec_path: str | None) -> dict[str, Any]:
    """The DataFingerprint result of the spec's data; raises TrainingError."""
    spec = load_spec(spec_path)
    files = data_files(spec)
    return {
        "kind": RESULT_KIND,
        "ok": True,
        "fingerprint": fingerprint(files),
        "files": len(files),
        "bytes": sum(f.size for f in files),
    }


def main(argv: list[str]) -> int:
    """Fingerprint the data once; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="kubeloop fingerprint", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--spec", help="TrainingPipeline YAML (or its spec); else KUBELOOP_SPEC")
    parser.add_argument("--result-path", default=None, help="default KUBELOOP_RESULT_PATH")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        result = measure(args.spec)
    except TrainingError as error:
        write_result(
            {"kind": RESULT_KIND, "ok": False, "reason": error.reason, "message": str(error)},
            args.result_path,
        )
        return error.exit_code
    except Exception as exc:  # a bug: still leave a result the operator can show
        traceback.print_exc()
        write_result(
            {"kind": RESULT_KIND, "ok": False, "reason": "InternalError", "message": repr(exc)},
            args.result_path,
        )
        return EXIT_CODES["InternalError"]
    log.info("%d files, %d bytes: %s", result["files"], result["bytes"], result["fingerprint"])
    write_result(result, args.result_path)
    return 0
