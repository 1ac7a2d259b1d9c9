"""MLflow (a real SQLite tracking store made by the test) and Weights & Biases (offline files
read back record by record) receive what a real `tessera train` run logs."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from estimate_support import RECIPES, tessera, tiny_char_overrides

from tessera.loggers.jsonl import read_jsonl

pytest.importorskip("mlflow")


@pytest.mark.slow  # SQLite store creation runs MLflow's schema migrations (~10 s)
def test_mlflow_store_holds_the_runs_metrics_params_and_status(shakespeare, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = tiny_char_overrides(shakespeare, tmp_path / "runs", name="mlflow-run")
    assert (
        tessera(
            "train",
            RECIPES / "shakespeare-char.yaml",
            *overrides,
            f"loggers.mlflow.tracking_uri={uri}",
            "loggers.mlflow.experiment=tests",
        )
        == 0
    )
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tests")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "mlflow-run" and run.info.status == "FINISHED"
    assert run.data.params["optimizer.lr"] == "0.003" and run.data.params["max_duration"] == "6ba"
    written = {
        r["step"]: r["loss/train"]
        for r in read_jsonl(tmp_path / "runs" / "mlflow-run" / "metrics.jsonl")
        if "loss/train" in r
    }
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss/train")}
    assert history == pytest.approx(written) and sorted(history) == [2, 4, 6]
    evals = client.get_metric_history(run.info.run_id, "metrics/eval/loss")
    assert sorted(m.step for m in evals) == [3, 6]


def test_mlflow_logger_needs_a_name(tmp_path, capsys):
    assert tessera("train", RECIPES / "shakespeare-char.yaml", "loggers.mlflow.experiment=") == 2
    assert "experiment" in capsys.readouterr().err


def _wandb_records(path: Path):
    """The protobuf records of a .wandb file: W&B's log format (a 7-byte header, then 32 KiB
    blocks of chunks, each with a 4-byte checksum, 2-byte length and 1-byte type: 1 full,
    2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, block, pending = 7, 32768, b""
    while position + 7 <= len(data):
        left_in_block = block - position % block
        if left_in_block < 7:
            position += left_in_block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += left_in_block
            continue
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_files_hold_history_and_config(shakespeare, tmp_path):
    pytest.importorskip("wandb")
    overrides = tiny_char_overrides(shakespeare, tmp_path / "runs", name="wandb-run")
    assert (
        tessera(
            "train",
            RECIPES / "shakespeare-char.yaml",
            *overrides,
            "loggers.wandb.mode=offline",
            "loggers.wandb.project=tests",
        )
        == 0
    )
    (run_file,) = (tmp_path / "runs" / "wandb-run" / "wandb").glob("offline-run-*/run-*.wandb")
    history: dict[int, dict[str, str]] = {}
    config: dict[str, str] = {}
    for record in _wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {_key(i): i.value_json for i in record.history.item}
            history.setdefault(int(items["_step"]), {}).update(items)
        elif kind == "run":
            assert record.run.display_name == "wandb-run" and record.run.project == "tests"
            config.update({_key(i): i.value_json for i in record.run.config.update})
    written = {
        r["step"]: r["loss/train"]
        for r in read_jsonl(tmp_path / "runs" / "wandb-run" / "metrics.jsonl")
        if "loss/train" in r
    }
    logged = {
        step: float(items["loss/train"]) for step, items in history.items() if "loss/train" in items
    }
    assert logged == pytest.approx(written)
    assert "metrics/eval/loss" in history[6]
    assert '"6ba"' in config["max_duration"] and "0.003" in config["optimizer"]


def test_wandb_bad_mode_exits_2(capsys):
    assert tessera("train", RECIPES / "shakespeare-char.yaml", "loggers.wandb.mode=sometimes") == 2
    assert "mode" in capsys.readouterr().err
