import json
import logging

import pytest
import torch

from tessera.core.checkpointer import FileCheckpointer, read_checkpoint
from tessera.core.errors import CheckpointError
from tessera.core.files import file_checksum
from tessera.core.manifest import CheckpointManifest
from tessera.optim import CosineWarmup, ScheduledLR
from tessera.trainer import Trainer


def make(small_loaders, classifier, run_dir, **kwargs):
    train, _ = small_loaders()
    model = classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = ScheduledLR(optimizer, CosineWarmup(t_warmup="3ba"))
    return Trainer(
        model,
        train,
        kwargs.pop("max_duration", "1ep"),
        optimizers=optimizer,
        schedulers=schedule,
        device="cpu",
        run_dir=run_dir,
        name="run",
        save_interval=kwargs.pop("save_interval", "2ba"),
        callbacks=[],
        loggers=[],
        **kwargs,
    )


def checkpoints_of(run_dir):
    return run_dir / "run" / "checkpoints"


def test_saves_on_interval_keeps_last_and_records_checksums(tmp_path, small_loaders, classifier):
    make(small_loaders, classifier, tmp_path, keep_last=2).fit()
    folder = checkpoints_of(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    names = [entry["name"] for entry in manifest["checkpoints"]]
    assert names == ["ep0-ba6", "ep1-ba8"]
    assert sorted(p.name for p in folder.glob("*.pt")) == ["ep0-ba6.pt", "ep1-ba8.pt"]
    for entry in manifest["checkpoints"]:
        ((name, record),) = entry["files"].items()
        assert file_checksum(folder / name) == record["xxh3_128"]
        # each checkpoint carries its own record beside it
        assert json.loads((folder / f"{entry['name']}.json").read_text()) == entry
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*"))


def test_autoresume_falls_back_when_newest_is_corrupt(tmp_path, small_loaders, classifier, caplog):
    make(small_loaders, classifier, tmp_path, max_duration="4ba").fit()
    newest = checkpoints_of(tmp_path) / "ep0-ba4.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        resumed = make(small_loaders, classifier, tmp_path, max_duration="6ba")
    assert "does not match its checksum" in caplog.text
    assert resumed.resumed_from == checkpoints_of(tmp_path) / "ep0-ba2.pt"
    assert resumed.state.timestamp.batch == 2


def test_truncated_checkpoint_is_skipped(tmp_path, small_loaders, classifier, caplog):
    make(small_loaders, classifier, tmp_path, max_duration="4ba").fit()
    folder = checkpoints_of(tmp_path)
    newest = folder / "ep0-ba4.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        assert FileCheckpointer(folder).latest_valid() == folder / "ep0-ba2.pt"
    assert "truncated" in caplog.text


def test_a_lost_manifest_is_rebuilt_from_the_checkpoint_records(
    tmp_path, small_loaders, classifier, caplog
):
    make(small_loaders, classifier, tmp_path, max_duration="4ba").fit()
    folder = checkpoints_of(tmp_path)
    for damage in (None, "[]", "null", "{not json", '{"format_version": 2}'):
        if damage is None:
            (folder / "manifest.json").unlink()
        else:
            (folder / "manifest.json").write_text(damage)
        with caplog.at_level(logging.WARNING):
            records = CheckpointManifest(folder).records()
        assert [r.name for r in records] == ["ep0-ba2", "ep0-ba4"]
        assert "rebuilt from the 2 checkpoint record(s)" in caplog.text
        caplog.clear()
    resumed = make(small_loaders, classifier, tmp_path, max_duration="6ba")
    assert resumed.state.timestamp.batch == 4


def test_load_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match=r"refers to .*print.*could run code"):
        read_checkpoint(path)


def test_resume_restores_everything(tmp_path, small_loaders, classifier):
    full = make(small_loaders, classifier, tmp_path / "a", max_duration="6ba")
    full.fit()
    make(small_loaders, classifier, tmp_path / "b", max_duration="4ba").fit()
    resumed = make(small_loaders, classifier, tmp_path / "b", max_duration="6ba")
    assert resumed.state.timestamp.batch == 4
    resumed.fit()
    for a, b in zip(full.state.model.parameters(), resumed.state.model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_of_another_shape_names_the_problem(tmp_path, small_loaders, classifier):
    make(small_loaders, classifier, tmp_path, max_duration="2ba").fit()
    from tessera.models import ModuleWithLoss

    other = ModuleWithLoss(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)))
    train, _ = small_loaders()
    with pytest.raises(CheckpointError, match="does not fit this model"):
        Trainer(
            other,
            train,
            "4ba",
            optimizers=torch.optim.SGD(other.parameters(), lr=0.1),
            device="cpu",
            run_dir=tmp_path,
            name="run",
            callbacks=[],
            loggers=[],
        )


def test_a_finished_run_exports_a_model_plain_pytorch_loads(tmp_path, small_loaders, classifier):
    from safetensors.torch import load_file

    trainer = make(small_loaders, classifier, tmp_path, max_duration="2ba")
    trainer.fit()
    folder = tmp_path / "run" / "final"
    network = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    network.load_state_dict(load_file(folder / "model.safetensors"))
    images = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(network(images), trainer.state.model.module(images))
    assert json.loads((folder / "config.json").read_text())["format"] == "tessera"


def test_the_end_of_a_run_is_checkpointed_and_a_rerun_trains_nothing(
    tmp_path, small_loaders, classifier
):
    make(small_loaders, classifier, tmp_path, max_duration="5ba", save_interval="2ba").fit()
    assert (checkpoints_of(tmp_path) / "ep0-ba5.pt").exists()  # not on the interval: the end
    again = make(small_loaders, classifier, tmp_path, max_duration="5ba", save_interval="2ba")
    before = [p.clone() for p in again.state.model.parameters()]
    again.fit()
    assert again.state.timestamp.batch == 5
    assert all(torch.equal(a, b) for a, b in zip(before, again.state.model.parameters()))
