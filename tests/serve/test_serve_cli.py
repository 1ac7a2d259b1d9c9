"""The commands: `tessera serve` as a real process, batch `generate`, `chat`, and their errors."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from serve_support import greedy_reference

from tessera.cli.main import main
from tessera.models.gpt.checkpoint import load_gpt
from tessera.serve.chat_template import DEFAULT_TEMPLATE

REPO = Path(__file__).resolve().parents[2]


def cut(text: str) -> str:
    """Text before the default chat template's first stop sequence."""
    for stop in DEFAULT_TEMPLATE.stop:
        text = text.split(stop)[0]
    return text


def test_tessera_serve_answers_the_openai_client_and_stops_gracefully(model_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TESSERA_API_KEY": "k"}
    command = [sys.executable, "-m", "tessera.cli", "serve", str(model_dir), "--port", "0"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        banner = process.stdout.readline()  # printed once the model is loaded
        assert "serving 'tiny'" in banner and "API key required" in banner, process.stderr.read()
        base = banner.split("on ", 1)[1].split(" ", 1)[0]
        client = openai.OpenAI(base_url=base, api_key="k", max_retries=0, timeout=60)
        answer = client.completions.create(
            model="tiny", prompt="ROMEO:", max_tokens=8, temperature=0
        )
        model = load_gpt(model_dir)
        expected = greedy_reference(model, model.tokenizer.encode("ROMEO:"), 8, eos=True)
        assert answer.choices[0].text == model.tokenizer.decode(expected)
        # Interrupted while a request streams: the request still gets all its tokens.
        stream = client.completions.create(
            model="tiny",
            prompt="O",
            max_tokens=400,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        first = next(iter(stream))
        process.send_signal(signal.SIGINT)
        rest = list(stream)
        assert len(first.choices[0].text + "".join(c.choices[0].text for c in rest)) == 400
        assert rest[-1].choices[0].finish_reason == "length"
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_a_port_in_use_is_a_clear_error(model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", str(model_dir), "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err


def test_a_run_without_a_final_model_names_the_checkpoint_to_export(tmp_path: Path, capsys) -> None:
    run = tmp_path / "unfinished"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("ep0-ba100.pt", "ep0-ba900.pt", "ep0-ba50.pt"):
        (run / "checkpoints" / name).write_bytes(b"")
    for command in ("serve", "generate", "chat"):
        assert (
            main([command, str(run), "--port", "0"] if command == "serve" else [command, str(run)])
            == 2
        )
        error = capsys.readouterr().err
        assert "has no final model" in error and "ep0-ba900.pt" in error, error
    sharded = tmp_path / "sharded"
    (sharded / "checkpoints" / "ep1-ba20").mkdir(parents=True)
    assert main(["generate", str(sharded)]) == 2
    assert f"tessera consolidate {sharded / 'checkpoints' / 'ep1-ba20'}" in capsys.readouterr().err
    assert main(["generate", "--hf", str(tmp_path)]) == 2
    assert f"{tmp_path / 'config.json'}: missing" in capsys.readouterr().err  # not an HF folder


def test_batch_mode_writes_one_result_per_request_in_order(
    model_dir: Path, tmp_path: Path, capsys
) -> None:
    model = load_gpt(model_dir)
    requests = [
        {"prompt": "ROMEO:", "max_tokens": 12},
        {"id": "chat-1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 9},
        {"prompt": "JULIET:", "n": 2, "temperature": 1.0, "seed": 3, "max_tokens": 6},
    ]
    source = tmp_path / "prompts.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in requests) + "\n")
    out = tmp_path / "out.jsonl"
    assert (
        main(["generate", str(model_dir), "--input", str(source), "--output", str(out), "--greedy"])
        == 0
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [1, "chat-1", 3]

    def greedy(prompt: str, steps: int) -> str:
        return model.tokenizer.decode(
            greedy_reference(model, model.tokenizer.encode(prompt), steps, eos=True)
        )

    assert lines[0]["choices"][0]["text"] == greedy("ROMEO:", 12)
    assert lines[0]["usage"] == {"prompt_tokens": 6, "completion_tokens": 12, "total_tokens": 18}
    assert lines[1]["choices"][0]["text"] == cut(greedy("user: Hi\nassistant: ", 9))
    samples = [c["text"] for c in lines[2]["choices"]]
    assert len(samples) == 2 and samples[0] != samples[1]
    # A bad line stops everything before any work, naming the line and field; no output file.
    source.write_text(
        json.dumps({"prompt": "O"}) + "\n" + json.dumps({"prompt": "O", "top_p": 7}) + "\n"
    )
    fresh = tmp_path / "fresh.jsonl"
    assert main(["generate", str(model_dir), "--input", str(source), "--output", str(fresh)]) == 2
    assert "prompts.jsonl, line 2: top_p" in capsys.readouterr().err and not fresh.exists()


def test_chat_in_the_terminal_streams_replies(model_dir: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("O Romeo\n/exit\n"))
    assert main(["chat", str(model_dir), "--temperature", "0", "--max-new-tokens", "10"]) == 0
    model = load_gpt(model_dir)
    prompt = model.tokenizer.encode("user: O Romeo\nassistant: ")
    reply = cut(model.tokenizer.decode(greedy_reference(model, prompt, 10, eos=True)))
    assert capsys.readouterr().out == f"model> {reply}\n"
