import json

import pytest
import torch

from tessera.core import checkpoint
from tessera.core.errors import CheckpointError
from tessera.core.trainer import Trainer
from tessera.optim import CosineWarmup, ScheduledLR


def make(small_loaders, classifier, folder, **kwargs):
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
        save_folder=folder,
        save_interval="2ba",
        **kwargs,
    )


def test_saves_on_interval_keeps_last_and_records_checksums(tmp_path, small_loaders, classifier):
    trainer = make(small_loaders, classifier, tmp_path, keep_last=2)
    trainer.fit()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    files = [entry["file"] for entry in manifest["checkpoints"]]
    assert files == ["ep0-ba6.pt", "ep1-ba8.pt"]
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == sorted(files)
    for entry in manifest["checkpoints"]:
        assert checkpoint.file_checksum(tmp_path / entry["file"]) == entry["xxh3_128"]
    assert not list(tmp_path.glob("*.tmp"))


def test_autoresume_falls_back_when_newest_is_corrupt(tmp_path, small_loaders, classifier):
    make(small_loaders, classifier, tmp_path, max_duration="4ba").fit()
    newest = tmp_path / "ep0-ba4.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="does not match its checksum"):
        resumed = make(small_loaders, classifier, tmp_path, max_duration="6ba", autoresume=True)
    assert resumed.resumed_from == tmp_path / "ep0-ba2.pt"
    assert resumed.state.timestamp.batch == 2


def test_truncated_checkpoint_is_skipped(tmp_path, small_loaders, classifier):
    make(small_loaders, classifier, tmp_path, max_duration="4ba").fit()
    newest = tmp_path / "ep0-ba4.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(UserWarning, match="truncated"):
        assert checkpoint.latest_valid(tmp_path) == tmp_path / "ep0-ba2.pt"


def test_load_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        checkpoint.load(path)


def test_resume_restores_everything(tmp_path, small_loaders, classifier):
    full = make(small_loaders, classifier, tmp_path / "a", max_duration="6ba")
    full.fit()
    make(small_loaders, classifier, tmp_path / "b", max_duration="4ba").fit()
    resumed = make(small_loaders, classifier, tmp_path / "b", max_duration="6ba", autoresume=True)
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
            save_folder=tmp_path,
            save_interval="2ba",
            autoresume=True,
        )


def test_export_loads_into_plain_pytorch(tmp_path, small_loaders, classifier):
    from safetensors.torch import load_file

    trainer = make(small_loaders, classifier, None, max_duration="2ba")
    trainer.fit()
    folder = trainer.export(tmp_path / "final")
    network = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    network.load_state_dict(load_file(folder / "model.safetensors"))
    images = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(network(images), trainer.state.model.module(images))
    assert json.loads((folder / "config.json").read_text())["format"] == "tessera"
