"""kubeloop_sdk checkpoints: written whole, copied to the checkpoint URI (a folder, or S3 on
moto's server), two kept on both sides, the newest readable one loaded back."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import kubeloop_sdk as kl
from kubeloop_sdk.checkpoints import stale, step_of

from .conftest import MakeContext


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], []),
        (["step-00000001.ckpt"], []),
        (["step-00000002.ckpt", "step-00000001.ckpt"], []),
        (
            ["step-00000010.ckpt", "step-00000002.ckpt", "step-00000009.ckpt", "notes.txt"],
            ["step-00000002.ckpt"],
        ),
        (
            ["step-00000003.ckpt", ".tmp-x", "step-00000001.ckpt", "step-00000002.ckpt"],
            ["step-00000001.ckpt"],
        ),
        (
            ["step-123456789.ckpt", "step-00000005.ckpt", "step-00000004.ckpt"],
            ["step-00000004.ckpt"],
        ),
    ],
)
def test_all_but_the_two_newest_are_stale(names: list[str], expected: list[str]) -> None:
    assert stale(names) == expected


def test_step_of_reads_only_checkpoint_names() -> None:
    assert step_of("step-00000007.ckpt") == 7
    assert step_of("step-7.ckpt") is None and step_of(".tmp-step-00000007.ckpt") is None


def test_save_copy_keep_two_and_load_the_newest(make_context: MakeContext, tmp_path: Path) -> None:
    remote = tmp_path / "artifacts" / "runs" / "3" / "checkpoints"
    ctx = make_context(checkpoint_uri=remote.as_uri())
    assert kl.load_checkpoint() is None
    for step in range(1, 4):
        path = kl.save_checkpoint(f"state {step}".encode(), step=step)
        assert path == ctx.checkpoint_dir / f"step-{step:08d}.ckpt"
    expected = ["step-00000002.ckpt", "step-00000003.ckpt"]
    assert sorted(p.name for p in ctx.checkpoint_dir.iterdir()) == expected
    assert sorted(p.name for p in remote.iterdir()) == expected
    assert (remote / "step-00000003.ckpt").read_bytes() == b"state 3"
    assert oct((remote / "step-00000003.ckpt").stat().st_mode & 0o777) == oct(0o644)

    got = kl.load_checkpoint()
    assert got == kl.Checkpoint(3, b"state 3", ctx.checkpoint_dir / "step-00000003.ckpt")


def test_a_file_is_saved_as_a_checkpoint_and_other_data_is_refused(
    make_context: MakeContext, tmp_path: Path
) -> None:
    make_context()
    state = tmp_path / "state.pt"
    state.write_bytes(b"\x00weights")
    kl.save_checkpoint(state, step=0)
    kl.save_checkpoint(str(state), step=1)
    loaded = kl.load_checkpoint()
    assert loaded is not None and (loaded.step, loaded.data) == (1, b"\x00weights")
    with pytest.raises(ValueError, match="bytes or the path of a file, not dict"):
        kl.save_checkpoint({"w": 1}, step=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a file"):
        kl.save_checkpoint(tmp_path / "missing.pt", step=2)
    with pytest.raises(ValueError, match="step=-1"):
        kl.save_checkpoint(b"x", step=-1)


def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(
    make_context: MakeContext,
) -> None:
    ctx = make_context()
    kl.save_checkpoint(b"one", step=1)
    newest = kl.save_checkpoint(b"two", step=2)
    assert newest is not None
    newest.unlink()
    newest.mkdir()  # reading a folder fails with an OSError, as a broken file would
    loaded = kl.load_checkpoint()
    assert loaded is not None and (loaded.step, loaded.data) == (1, b"one")
    assert ctx.checkpoint_dir.is_dir()


def test_only_rank_0_saves(make_context: MakeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_context()
    monkeypatch.setenv("RANK", "1")
    assert kl.save_checkpoint(b"x", step=1) is None
    assert not ctx.checkpoint_dir.exists()


def test_an_unknown_scheme_keeps_checkpoints_in_the_pod_with_a_warning(
    make_context: MakeContext, caplog: pytest.LogCaptureFixture
) -> None:
    make_context(checkpoint_uri="gs://bucket/ckpt")
    with caplog.at_level(logging.WARNING, logger="kubeloop_sdk"):
        kl.save_checkpoint(b"x", step=1)
    assert "checkpoints stay in the pod: gs://bucket/ckpt" in caplog.text
    assert kl.load_checkpoint() is not None


def test_checkpoints_go_to_s3(make_context: MakeContext, s3_endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="models")
    make_context(checkpoint_uri="s3://models/churn/runs/3/checkpoints/")
    for step in (5, 6, 7):
        kl.save_checkpoint(f"s{step}".encode(), step=step)
    listed = client.list_objects_v2(Bucket="models", Prefix="churn/runs/3/checkpoints/")
    keys = sorted(item["Key"] for item in listed["Contents"])
    assert keys == [
        "churn/runs/3/checkpoints/step-00000006.ckpt",
        "churn/runs/3/checkpoints/step-00000007.ckpt",
    ]
    body = client.get_object(Bucket="models", Key=keys[1])["Body"].read()
    assert body == b"s7"


def test_a_failed_copy_is_a_warning_and_the_local_checkpoint_stays(
    make_context: MakeContext, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    make_context(checkpoint_uri=(blocker / "checkpoints").as_uri())
    with caplog.at_level(logging.WARNING, logger="kubeloop_sdk"):
        path = kl.save_checkpoint(b"x", step=1)
    assert path is not None and path.read_bytes() == b"x"
    assert "step-00000001.ckpt not copied to file://" in caplog.text
    assert os.path.isfile(blocker)
