"""kubeloop_sdk.context: the run context from context.json, the rank from torchrun's env, and
errors that say how to run outside Kubeloop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kubeloop_sdk as kl

from .conftest import MakeContext


def test_a_written_context_reads_back_with_its_defaults(
    make_context: MakeContext, tmp_path: Path
) -> None:
    ctx = make_context(
        run_id="3",
        target="label",
        features=[
            "a",
            {"name": "b", "dtype": "string", "kind": "categorical", "categories": ["x"]},
        ],
        classes=(0, 1),
        params={"epochs": 2, "lr": 0.01},
        seed=7,
        checkpointUri="file:///tmp/ckpt",
    )
    root = (tmp_path / "run").resolve()
    assert (ctx.run_id, ctx.pipeline, ctx.namespace, ctx.task) == (
        "3",
        "local",
        "default",
        "classification",
    )
    assert ctx.features == (
        kl.Feature("a"),
        kl.Feature("b", "string", "categorical", ("x",)),
    )
    assert ctx.feature_names == ["a", "b"]
    assert ctx.classes == (0, 1) and ctx.seed == 7 and ctx.params["epochs"] == 2
    assert ctx.data_dir == root / "data" and ctx.model_dir == root / "output" / "model"
    assert ctx.checkpoint_dir == root / "checkpoints" and ctx.output_dir == root / "output"
    assert ctx.checkpoint_uri == "file:///tmp/ckpt"
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (0, 1, 0, True)
    ctx.params["epochs"] = 3  # the caller's copy
    assert kl.context().params == {"epochs": 2, "lr": 0.01}


def test_the_rank_comes_from_torchruns_env(
    make_context: MakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_context()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = kl.context()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (3, 4, 1, False)
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(kl.ContextError, match="RANK='one'"):
        kl.context()


def test_relative_paths_are_the_context_files_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ctx.json"
    path.write_text(
        json.dumps(
            {
                "runId": "1",
                "pipeline": "p",
                "namespace": "ml",
                "task": "regression",
                "dataDir": "data",
                "modelDir": "out/model",
                "checkpointDir": "ckpt",
                "futureKey": {"ignored": True},
            }
        )
    )
    monkeypatch.setenv(kl.CONTEXT_ENV, str(path))
    ctx = kl.context()
    assert ctx.data_dir == tmp_path / "data" and ctx.output_dir == tmp_path / "out"
    assert ctx.features == () and ctx.classes is None and ctx.seed is None


def test_no_context_file_says_how_to_run_outside_kubeloop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(kl.CONTEXT_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(kl.ContextError) as caught:
        kl.context()
    message = str(caught.value)
    assert "KUBELOOP_CONTEXT" in message and "write_context" in message
    assert str(tmp_path / "missing.json") in message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "a JSON object"),
        ("{", "not JSON"),
        ('{"runId": "1"}', "missing pipeline, namespace, task, dataDir, modelDir, checkpointDir"),
    ],
)
def test_a_broken_context_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, message: str
) -> None:
    path = tmp_path / "context.json"
    path.write_text(content)
    monkeypatch.setenv(kl.CONTEXT_ENV, str(path))
    with pytest.raises(kl.ContextError, match=message):
        kl.context()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task": "ranking"}, "task: 'ranking'; use 'classification' or 'regression'"),
        ({"seed": "7"}, "seed: an integer"),
        ({"params": [1]}, "params: an object"),
        ({"classes": "ab"}, "classes: a list"),
        ({"features": [3]}, r"features\[0\]: an object with a 'name'"),
    ],
)
def test_write_context_refuses_what_context_would(
    tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(kl.ContextError, match=message):
        kl.write_context(tmp_path / "context.json", **fields)
    assert not (tmp_path / "context.json").exists()


def test_write_context_names_an_unknown_field(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"unknown field.*epochs.*known: runId"):
        kl.write_context(tmp_path / "context.json", epochs=3)
