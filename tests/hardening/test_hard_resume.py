"""No silent loss of progress: a damaged manifest is rebuilt from the checkpoints' own records,
and a run that would start over beside checkpoints it cannot use (none verifies, none has a
record) stops with the files and the fix, unless told `autoresume: restart`."""

from __future__ import annotations

import json
import logging

import pytest
from hardening_support import tiny_trainer

from tessera.core.errors import CheckpointError


@pytest.fixture
def finished(tmp_path):
    """A run of 4 batches: checkpoints ep0-ba2.pt and ep0-ba4.pt, each with its record."""
    tiny_trainer(tmp_path).fit()
    return tmp_path, tmp_path / "run" / "checkpoints"


def snapshot(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def corrupt(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGED_MANIFESTS = [
    None,  # deleted
    "[]",
    "null",
    "{not json",
    '{"format_version": 2}',
    '{"format_version": 2, "checkpoints": [{"name": "ep0-ba4"}]}',
    '{"format_version": 2, "checkpoints": "all"}',
    '{"format_version": 1, "checkpoints": 7}',
    '{"format_version": 1, "checkpoints": [{"file": 3, "bytes": 1}]}',
    '{"format_version": 99, "checkpoints": []}',
]


@pytest.mark.parametrize("damage", DAMAGED_MANIFESTS)
def test_a_damaged_manifest_is_rebuilt_and_the_run_resumes(finished, damage, caplog):
    root, checkpoints = finished
    manifest = checkpoints / "manifest.json"
    if damage is None:
        manifest.unlink()
    else:
        manifest.write_text(damage)
    with caplog.at_level(logging.WARNING):
        resumed = tiny_trainer(root, max_duration="6ba")
    assert resumed.state.timestamp.batch == 4
    assert caplog.text.count("rebuilt from the 2 checkpoint record(s)") == 1  # said once
    assert resumed.resumed_from == checkpoints / "ep0-ba4.pt"
    assert "rebuilt from the 2 checkpoint record(s)" in caplog.text


def test_checkpoints_without_records_stop_the_run_with_the_fix(finished):
    root, checkpoints = finished
    for record in checkpoints.glob("*.json"):
        record.unlink()
    before = snapshot(checkpoints)
    with pytest.raises(CheckpointError) as error:
        tiny_trainer(root, max_duration="6ba")
    message = str(error.value)
    assert "none of its 2 checkpoint(s) can be used" in message
    assert "ep0-ba2.pt has no checksum record" in message
    assert "ep0-ba4.pt has no checksum record" in message
    assert f"load_path={checkpoints / 'ep0-ba4.pt'}" in message
    assert "autoresume=restart" in message
    assert snapshot(checkpoints) == before  # nothing was overwritten or deleted
    # the way out it names: resume from one of them, unverified (and said so)
    resumed = tiny_trainer(root, max_duration="6ba", load_path=checkpoints / "ep0-ba4.pt")
    assert resumed.state.timestamp.batch == 4


def test_all_corrupt_checkpoints_stop_the_run_instead_of_starting_over(finished, caplog):
    root, checkpoints = finished
    for checkpoint in checkpoints.glob("*.pt"):
        corrupt(checkpoint)
    before = snapshot(checkpoints)
    with caplog.at_level(logging.WARNING), pytest.raises(CheckpointError) as error:
        tiny_trainer(root, max_duration="6ba")
    message = str(error.value)
    assert "ep0-ba4.pt does not match its checksum" in message
    assert "ep0-ba2.pt does not match its checksum" in message
    assert "restore the damaged files" in message and "autoresume=restart" in message
    assert "instead" not in caplog.text  # no "falling back" to a checkpoint that is not there
    assert snapshot(checkpoints) == before


def test_a_newest_checkpoint_without_a_record_is_passed_over_aloud(finished, caplog):
    root, checkpoints = finished
    (checkpoints / "ep0-ba4.json").unlink()
    manifest = json.loads((checkpoints / "manifest.json").read_text())
    manifest["checkpoints"] = [c for c in manifest["checkpoints"] if c["name"] != "ep0-ba4"]
    (checkpoints / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        resumed = tiny_trainer(root, max_duration="6ba")
    assert resumed.state.timestamp.batch == 2
    assert "skipping checkpoint ep0-ba4.pt: it has no checksum record" in caplog.text
    assert f"using checkpoint {checkpoints / 'ep0-ba2.pt'} instead" in caplog.text


def test_a_record_written_without_the_index_still_counts(finished):
    """A crash between a checkpoint's own record and the index loses nothing."""
    root, checkpoints = finished
    manifest = json.loads((checkpoints / "manifest.json").read_text())
    manifest["checkpoints"] = manifest["checkpoints"][:1]  # the index lags one checkpoint
    (checkpoints / "manifest.json").write_text(json.dumps(manifest))
    assert tiny_trainer(root, max_duration="6ba").state.timestamp.batch == 4


def test_autoresume_false_beside_checkpoints_is_refused(finished):
    root, _ = finished
    with pytest.raises(CheckpointError, match="would mix the two runs' checkpoints") as error:
        tiny_trainer(root, autoresume=False)
    assert "ep0-ba2.pt, ep0-ba4.pt" in str(error.value)


def test_restart_sets_the_earlier_run_aside_and_starts_over(finished, caplog):
    root, checkpoints = finished
    before = snapshot(checkpoints)
    with caplog.at_level(logging.WARNING):
        trainer = tiny_trainer(root, autoresume="restart", max_duration="2ba")
    assert trainer.state.timestamp.batch == 0 and trainer.resumed_from is None
    (replaced,) = (root / "run" / "replaced").iterdir()
    assert snapshot(replaced / "checkpoints") == before  # moved whole, nothing deleted
    assert (replaced / "final" / "model.safetensors").is_file()
    assert f"moved the earlier run's checkpoints, final to {replaced}" in caplog.text
    trainer.fit()
    assert sorted(p.name for p in checkpoints.glob("*.pt")) == ["ep0-ba2.pt"]
    # a load_path inside the run folder follows the files it names
    again = tiny_trainer(
        root, autoresume="restart", max_duration="6ba", load_path=checkpoints / "ep0-ba2.pt"
    )
    assert again.state.timestamp.batch == 2
    assert again.resumed_from.parent.parent.parent.name == "replaced"


def test_resume_complete_and_skipped_checkpoints_are_said_on_the_console(finished, capsys):
    """A Python user with no logging set up sees the three notices (plain lines through
    logging's last-resort handler, not Python warnings with a source line)."""
    root, checkpoints = finished
    corrupt(checkpoints / "ep0-ba4.pt")
    capsys.readouterr()
    handlers = logging.root.handlers[:]
    logging.root.handlers.clear()  # as in a script: no handler set up (pytest adds its own)
    try:
        tiny_trainer(root, max_duration="2ba").fit()
    finally:
        logging.root.handlers[:] = handlers
    output = capsys.readouterr().err
    lines = output.splitlines()
    assert any(line.startswith("skipping checkpoint ep0-ba4.pt: ") for line in lines)
    assert f"resumed from {checkpoints / 'ep0-ba2.pt'} at epoch 0 batch 2" in output
    assert "run is already complete: max_duration 2ba reached at epoch 0 batch 2" in output
    assert "Warning" not in output and "warnings.warn" not in output


def test_records_of_checkpoints_that_are_not_there_hold_no_progress(finished, caplog):
    """What a crash leaves between writing a checkpoint's record and renaming its file into
    place (the record comes first): a record with no file, passed over aloud."""
    root, checkpoints = finished
    (checkpoints / "ep0-ba4.pt").unlink()
    with caplog.at_level(logging.WARNING):
        assert tiny_trainer(root, max_duration="6ba").state.timestamp.batch == 2
    assert "skipping checkpoint ep0-ba4.pt" in caplog.text and "is missing" in caplog.text
    caplog.clear()
    (checkpoints / "ep0-ba2.pt").unlink()
    with caplog.at_level(logging.WARNING):
        assert tiny_trainer(root, max_duration="6ba").state.timestamp.batch == 0
    assert f"checkpoint {checkpoints / 'ep0-ba2.pt'} has a record but is not there" in caplog.text
