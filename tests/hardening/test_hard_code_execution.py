"""Nothing Tessera reads may run code: a crafted sharded checkpoint (DCP `.metadata`, a value in
the shards, a rank's train state), a single-file checkpoint, a Hugging Face folder, a recipe,
a token file's side arrays and a streaming index each try, and a marker file proves whether
their code ran. Each is refused with an error that says what was found, never a traceback."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp
from hardening_support import REPO, RunsCode, forge_record, tiny_gpt_recipe, tiny_trainer

from tessera.cli.main import main
from tessera.core.checkpointer import read_checkpoint
from tessera.core.errors import CheckpointError, ConfigError, DataError, UserError
from tessera.parallel.process_group import stop
from tessera.parallel.safe_dcp import ALLOWED, read_metadata
from tessera.parallel.sharded_checkpointer import _sharded_content, train_state_file


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A finished one-process FSDP run (checkpoints ep0-ba2 and ep0-ba4); its process group
    stays up for the module's tests."""
    root = tmp_path_factory.mktemp("sharded")
    trainer = tiny_trainer(root, sharded=True)
    trainer.fit()
    yield trainer, root / "run" / "checkpoints"
    stop()


@pytest.fixture
def copy_of(sharded, tmp_path):
    """A fresh copy of the sharded run's checkpoints folder for one test to tamper with."""
    _, checkpoints = sharded
    target = tmp_path / "run" / "checkpoints"
    shutil.copytree(checkpoints, target)
    return target


def crafted_metadata(checkpoint, marker) -> None:
    """Genuine DCP metadata with one object more: one that runs code when unpickled."""
    metadata = read_metadata(checkpoint)
    metadata.planner_data = {"extra": RunsCode(marker)}
    (checkpoint / ".metadata").write_bytes(pickle.dumps(metadata))


def test_real_dcp_metadata_needs_only_the_allowed_classes(sharded):
    _, checkpoints = sharded
    seen = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            seen.add((module, name))
            return super().find_class(module, name)

    with open(checkpoints / "ep0-ba4" / ".metadata", "rb") as file:
        Recorder(file).load()
    assert seen and seen <= ALLOWED
    assert ("torch.distributed.checkpoint.metadata", "Metadata") in seen


@pytest.mark.parametrize("record", ["tampered", "forged", "removed"])
def test_consolidate_never_runs_a_crafted_metadata(copy_of, tmp_path, capsys, record):
    marker = tmp_path / "code-ran"
    checkpoint = copy_of / "ep0-ba4"
    crafted_metadata(checkpoint, marker)
    if record == "forged":
        forge_record(copy_of, "ep0-ba4")
    elif record == "removed":
        (copy_of / "ep0-ba4.json").unlink()
        (copy_of / "manifest.json").unlink()
    code = main(["consolidate", str(checkpoint), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2 and not marker.exists()
    assert "Traceback" not in error
    if record == "tampered":  # the checksum catches it before anything is read
        assert "its record says" in error or "does not match its checksum" in error
    else:
        assert "refers to posix.system" in error and "could run code" in error
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_fsdp_resume_never_runs_a_crafted_metadata(sharded, copy_of, tmp_path):
    marker = tmp_path / "code-ran"
    crafted_metadata(copy_of / "ep0-ba4", marker)
    forge_record(copy_of, "ep0-ba4")
    with pytest.raises(CheckpointError, match=r"refers to posix\.system.*could run code"):
        tiny_trainer(tmp_path, sharded=True, max_duration="6ba")
    assert not marker.exists()


def test_a_crafted_value_inside_the_shards_never_runs(sharded, copy_of, tmp_path):
    """DCP reads non-tensor values (an optimizer's lr) with torch.load(weights_only=False)."""
    trainer, _ = sharded
    marker = tmp_path / "code-ran"
    checkpoint = copy_of / "ep0-ba4"
    content = _sharded_content(trainer.state)
    content["optimizer"]["param_groups"][0]["lr"] = RunsCode(marker)
    for old in checkpoint.glob("__*"):
        old.unlink()
    dcp.save(content, checkpoint_id=str(checkpoint))
    forge_record(copy_of, "ep0-ba4")
    with pytest.raises(CheckpointError, match=r"param_groups\.0\.lr.*refers to posix\.system"):
        trainer.checkpointer.load(trainer.state, checkpoint)
    assert not marker.exists()


def test_a_crafted_train_state_never_runs(sharded, copy_of, tmp_path, capsys):
    trainer, _ = sharded
    marker = tmp_path / "code-ran"
    checkpoint = copy_of / "ep0-ba4"
    torch.save({"format_version": 1, "sharded": RunsCode(marker)}, checkpoint / train_state_file(0))
    forge_record(copy_of, "ep0-ba4")
    with pytest.raises(CheckpointError, match=r"train-state-rank0\.pt refers to posix\.system"):
        trainer.checkpointer.load(trainer.state, checkpoint)
    assert main(["consolidate", str(checkpoint), "--out", str(tmp_path / "out")]) == 2
    assert "refers to posix.system" in capsys.readouterr().err
    assert not marker.exists()


def test_a_crafted_single_file_checkpoint_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    tiny_trainer(tmp_path).fit()
    checkpoint = tmp_path / "run" / "checkpoints" / "ep0-ba4.pt"
    content = torch.load(checkpoint, weights_only=True)
    content["rng"] = RunsCode(marker)
    torch.save(content, checkpoint)
    forge_record(checkpoint.parent, checkpoint.name)
    with pytest.raises(CheckpointError, match=r"refers to posix\.system.*could run code"):
        read_checkpoint(checkpoint)
    with pytest.raises(CheckpointError, match=r"refers to posix\.system"):  # autoresume too
        tiny_trainer(tmp_path, max_duration="6ba")
    assert not marker.exists()


# -- files of other formats -----------------------------------------------------------------


def _hf_folder(folder, **config):
    """A tiny GPT-2 folder transformers can load: config.json and a byte-level tokenizer."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    folder.mkdir(parents=True)
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel({"a": 0, "b": 1}, "a"))
    transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="b").save_pretrained(
        folder
    )
    settings = {"model_type": "gpt2", "n_layer": 1, "n_head": 1, "n_embd": 8, "vocab_size": 2}
    (folder / "config.json").write_text(json.dumps({**settings, **config}))
    return folder


def test_a_hugging_face_folder_never_runs_its_own_code(tmp_path):
    from tessera.eval.models import HFModel

    marker = tmp_path / "code-ran"
    code = {"AutoConfig": "evil.Config", "AutoModelForCausalLM": "evil.Model"}
    folder = _hf_folder(tmp_path / "custom", model_type="evil-arch", auto_map=code)
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w')\nConfig = Model = None\n")
    with pytest.raises(UserError, match="run its own Python code"):
        HFModel(folder, torch.device("cpu"), torch.float32)
    assert not marker.exists()


def test_a_hugging_face_folder_with_pickled_weights_never_runs(tmp_path):
    from tessera.eval.models import HFModel

    marker = tmp_path / "code-ran"
    folder = _hf_folder(tmp_path / "pickled")
    torch.save({"transformer.wte.weight": RunsCode(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="holds pickled code"):
        HFModel(folder, torch.device("cpu"), torch.float32)
    assert not marker.exists()


def test_a_recipe_cannot_construct_python_objects(tmp_path):
    from tessera.config import load_config

    marker = tmp_path / "code-ran"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"max_duration: !!python/object/apply:os.system ['touch {marker}']\n"
        "model: {name: resnet}\ndata: {name: fashion_mnist}\n"
    )
    with pytest.raises(ConfigError):
        load_config(recipe)
    recipe = REPO / "recipes" / "fashion-mnist-resnet.yaml"
    with pytest.raises(ConfigError, match="seed"):
        load_config(recipe, [f"seed=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


def test_token_file_side_arrays_must_be_plain_integers(tmp_path):
    from tessera.data.text.token_file import TokenFile, write_token_file

    marker = tmp_path / "code-ran"
    prefix = tmp_path / "train"
    rows = np.zeros((2, 5), dtype=np.uint16)
    write_token_file(prefix, rows, {"vocab_size": 10}, lengths=np.array([5, 3]))
    np.save(f"{prefix}.lengths.npy", np.array([RunsCode(marker), 3], dtype=object))
    with pytest.raises(DataError, match=r"lengths\.npy is not a plain numeric"):
        TokenFile(prefix)
    assert not marker.exists()


def test_streaming_column_names_are_data_never_code(tmp_path):
    from tessera.data.dataset import StreamingDataset
    from tessera.data.writer import ShardWriter

    marker = tmp_path / "code-ran"
    hostile = f"x': __import__('os').system('touch {marker}'), 'y"
    with ShardWriter(str(tmp_path / "data"), {hostile: "int"}) as writer:
        for value in range(3):
            writer.write({hostile: value})
    samples = list(StreamingDataset(local=str(tmp_path / "data"), shuffle=False))
    assert [sample[hostile] for sample in samples] == [0, 1, 2]
    assert not marker.exists()


def test_a_damaged_safetensors_file_is_a_clear_error_everywhere(tmp_path, capsys):
    """eval, generate and export read final/model.safetensors: garbage there is exit 2."""
    from tessera.config import load_config
    from tessera.config.build import build_model, write_resolved_config
    from tessera.core.export import export_model

    recipe = tiny_gpt_recipe(tmp_path)
    config = load_config(recipe)
    write_resolved_config(config)
    run = tmp_path / "runs" / "gpt"
    export_model(build_model(config), run / "final")
    (run / "final" / "model.safetensors").write_bytes(b"\xff" * 8 + b"not a header" * 10)
    commands = (
        ["eval", str(run)],
        ["generate", str(run), "--prompt", "the"],
        ["export", "hf", str(run), str(tmp_path / "hf")],
    )
    for command in commands:
        assert main(command) == 2, command
        error = capsys.readouterr().err
        assert "model.safetensors is not a readable safetensors file" in error, command
        assert "Traceback" not in error


def test_the_estimate_probe_reads_no_checkpoint_of_the_recipe(tmp_path):
    """`tessera estimate --probe` builds a real run from the recipe: never from its load_path
    or the run folder's checkpoints (a crafted one stays unread)."""
    from tessera.config import load_config
    from tessera.estimate.probe import build_probe_trainer

    marker = tmp_path / "code-ran"
    crafted = tmp_path / "crafted.pt"
    torch.save({"format_version": 1, "model": RunsCode(marker)}, crafted)
    config = load_config(tiny_gpt_recipe(tmp_path), [f"load_path={crafted}"])
    trainer = build_probe_trainer(config, 2, tmp_path / "probe")
    assert trainer.resumed_from is None and trainer.state.timestamp.batch == 0
    assert not marker.exists()
