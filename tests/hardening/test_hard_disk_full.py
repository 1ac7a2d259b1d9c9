"""A full disk (a real tmpfs, filled with a ballast file) while Tessera writes a checkpoint, its
record, the manifest, the final model, metrics.jsonl, cost.json, provenance.json or the run
registry: one WriteError naming the file (exit code 2, no traceback), nothing that existed is
changed, no half-written file is left, and once space is free the same run resumes."""

from __future__ import annotations

import json
import math

import pytest
from hardening_support import PAGE, fill, small_disk, tiny_gpt_recipe, tiny_trainer

from tessera.callbacks.cost_monitor import CostMonitor
from tessera.callbacks.provenance import ProvenanceRecorder
from tessera.cli.main import main
from tessera.core.files import WriteError
from tessera.launch.registry import Registry
from tessera.loggers.jsonl import JSONLLogger


@pytest.fixture
def disk(tmp_path):
    with small_disk(tmp_path / "disk", 8 << 20) as folder:
        yield folder


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def pages(size: int) -> int:
    return math.ceil(size / PAGE) * PAGE


@pytest.mark.parametrize("room", ["none", "checkpoint only", "checkpoint and record"])
def test_a_full_disk_while_checkpointing_keeps_every_checkpoint_and_resumes(disk, room):
    tiny_trainer(disk).fit()  # ep0-ba2.pt, ep0-ba4.pt, their records, the manifest, final/
    checkpoints = disk / "run" / "checkpoints"
    before = snapshot(checkpoints)
    size = pages((checkpoints / "ep0-ba4.pt").stat().st_size)
    leave = {"none": PAGE, "checkpoint only": size, "checkpoint and record": size + PAGE}[room]
    ballast = fill(disk, leave)
    trainer = tiny_trainer(disk, max_duration="6ba")  # resumes at ba4; ep0-ba6 does not fit
    with pytest.raises(WriteError) as error:
        trainer.fit()
    message = str(error.value)
    assert f"cannot write checkpoint {checkpoints / 'ep0-ba6.pt'}: the disk is full" in message
    assert "Every file written before is intact" in message and "run the same command" in message
    after = snapshot(checkpoints)
    assert not [name for name in after if str(name).endswith(".tmp")]  # no half-written file
    if room == "checkpoint and record":  # complete and recorded: kept, found by its record
        assert {"ep0-ba6.pt", "ep0-ba6.json"} <= {str(name) for name in after}
    else:
        assert after == before
    ballast.unlink()
    resumed = tiny_trainer(disk, max_duration="6ba")
    assert resumed.state.timestamp.batch == (6 if room == "checkpoint and record" else 4)
    resumed.fit()
    assert resumed.state.timestamp.batch == 6


def test_a_full_disk_while_writing_sharded_checkpoints(disk):
    from tessera.parallel.process_group import stop

    try:
        tiny_trainer(disk, sharded=True).fit()
        checkpoints = disk / "run" / "checkpoints"
        before = snapshot(checkpoints)
        ballast = fill(disk, PAGE)
        with pytest.raises(WriteError) as error:
            tiny_trainer(disk, sharded=True, max_duration="6ba").fit()
        assert f"cannot write checkpoint {checkpoints / 'ep0-ba6'}: the disk is full" in str(
            error.value
        )
        assert snapshot(checkpoints) == before  # no partial folder, nothing changed
        ballast.unlink()
        resumed = tiny_trainer(disk, sharded=True, max_duration="6ba")
        assert resumed.state.timestamp.batch == 4
    finally:
        stop()


def test_a_full_disk_while_exporting_the_final_model_keeps_the_old_one(disk):
    tiny_trainer(disk).fit()
    final = disk / "run" / "final"
    before = snapshot(final)
    (final / "model.safetensors").unlink()  # an export that must be written again
    ballast = fill(disk, PAGE)
    with pytest.raises(WriteError, match=r"cannot write the model .*final: the disk is full"):
        tiny_trainer(disk).fit()  # complete: nothing to train, only the export
    assert not list(final.glob(".*"))
    ballast.unlink()
    tiny_trainer(disk).fit()
    assert snapshot(final) == before


def test_a_full_disk_never_leaves_a_torn_metrics_line(disk):
    logger = JSONLLogger(path=disk / "metrics.jsonl")
    fill(disk, 2 * PAGE)
    with pytest.raises(WriteError, match=r"cannot write the metrics file .*the disk is full"):
        for step in range(100_000):
            logger.log_metrics({"loss/train": 0.5, "padding": "x" * 200}, step)
    text = (disk / "metrics.jsonl").read_text()
    assert text.endswith("\n")
    steps = [json.loads(line)["step"] for line in text.splitlines()]
    assert steps == list(range(len(steps))) and len(steps) > 10
    logger.close(None, None)


def test_a_full_disk_while_writing_cost_and_provenance(disk):
    for callback, what in (
        (CostMonitor(price_per_gpu_hour=2.0), "the cost record"),
        (ProvenanceRecorder(), "the provenance record"),
    ):
        trainer = tiny_trainer(disk, callbacks=[callback], save_interval=None)
        ballast = fill(disk, 0)
        with pytest.raises(WriteError, match=f"cannot write {what} .*the disk is full"):
            trainer.fit()
        ballast.unlink()


def test_a_full_disk_under_the_run_registry(disk):
    fill(disk, 0)
    with pytest.raises(WriteError, match=r"cannot write the run registry .*TESSERA_HOME"):
        Registry(disk / "registry.db")


def test_tessera_train_on_a_disk_that_fills_up(disk, tmp_path, capsys):
    """The whole command: exit 2 with one paragraph, then the same command resumes."""
    recipe = tiny_gpt_recipe(tmp_path, name="full", run_dir=disk)
    assert main(["train", str(recipe), "max_duration=4ba", "--price", "1"]) == 0
    capsys.readouterr()
    ballast = fill(disk, 2 * PAGE)
    assert main(["train", str(recipe), "--price", "1"]) == 2  # a traceback would fail here
    failed = capsys.readouterr().err
    errors = [line for line in failed.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "the disk is full" in errors[0], failed
    assert "run the same command again" in errors[0]
    ballast.unlink()
    assert main(["train", str(recipe), "--price", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["resumed_from"] == str(disk / "full" / "checkpoints" / "ep0-ba4.pt")
    assert summary["timestamp"]["batch"] == 8
