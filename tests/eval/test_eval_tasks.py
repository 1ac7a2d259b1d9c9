"""Tasks as data: bundled task files, prompts and few-shot draws, and refusals of bad input."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tessera.core.errors import ConfigError, DataError, UserError
from tessera.eval.data import find_eval_file, read_jsonl
from tessera.eval.prompts import build_prompts, draw_shots
from tessera.eval.tasks import TaskData, bundled_tasks, load_task

REPO = Path(__file__).resolve().parents[2]


def write_task(folder: Path, rows: list, **spec) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mini.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    spec = {
        "name": "mini",
        "type": "multiple_choice",
        "data": "mini.jsonl",
        "data_dir": str(folder),
        **spec,
    }
    path = folder / "mini.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


MINI = [
    {"query": f"Q{i}:", "choices": [f"a{i}", f"b{i}", f"c{i}"], "gold": i % 3} for i in range(8)
]


def test_every_bundled_task_loads_its_real_data() -> None:
    names = set(bundled_tasks())
    assert {
        "piqa",
        "arc_easy",
        "arc_challenge",
        "openbook_qa",
        "commonsense_qa",
        "copa",
        "boolq",
        "winograd_wsc",
        "winogrande",
        "lambada_openai",
        "jeopardy",
        "gsm8k",
    } <= names
    for name in names:
        task = TaskData.load(load_task(name))
        assert task.examples and task.path.is_file()
        prompts = build_prompts(task, task.spec.num_fewshot[-1], limit=3)
        assert len(prompts) == 3
    piqa = TaskData.load(load_task("piqa"))
    assert piqa.random_baseline == pytest.approx(0.5)
    first = build_prompts(piqa, 0, limit=1)[0]
    row = piqa.examples[0]
    assert first.pairs == [(row["query"] + "Answer:", " " + choice) for choice in row["choices"]]


def test_few_shot_is_seeded_and_never_the_example_itself(tmp_path: Path) -> None:
    task = TaskData.load(load_task(str(write_task(tmp_path, MINI))))
    prompts = build_prompts(task, 3)
    again = build_prompts(task, 3)
    assert [p.pairs for p in prompts] == [p.pairs for p in again]
    for index, prompt in enumerate(prompts):
        context = prompt.pairs[0][0]
        shots = context.split("\n\n")
        assert len(shots) == 4 and shots[-1] == f"Q{index}:"
        assert f"Q{index}:" not in shots[:-1]
        for shot in shots[:-1]:  # each shot shows its own gold answer after the delimiter
            number = int(shot[1 : shot.index(":")])
            assert shot == f"Q{number}: {MINI[number]['choices'][MINI[number]['gold']]}"
    # the draw is lm-eval's: n + 1 from one Random(seed), the example dropped
    rng = random.Random(1234)
    expected = [x for x in rng.sample(MINI, 4) if x != MINI[0]][:3]
    assert draw_shots(MINI, MINI[0], 3, random.Random(1234)) == expected
    # a pool holding copies of the example still gives shots that are not the example
    copies = [MINI[0]] * 5 + MINI[1:3]
    assert MINI[0] not in draw_shots(copies, MINI[0], 2, random.Random(0))


def test_schema_and_generation_prompts(tmp_path: Path) -> None:
    rows = [
        {"context_options": [f"A{i} x", f"A{i} y"], "continuation": f"end{i}", "gold": i % 2}
        for i in range(4)
    ]
    task = TaskData.load(load_task(str(write_task(tmp_path / "s", rows, type="schema"))))
    prompt = build_prompts(task, 1)[0]
    shot = prompt.pairs[0][0][: -len("A0 x")]
    assert [c for _, c in prompt.pairs] == [" end0", " end0"]
    assert prompt.pairs[1][0].endswith("A0 y") and shot.endswith("\n\n")
    number = int(shot[1])
    assert shot == rows[number]["context_options"][number % 2] + f" end{number}\n\n"
    gen_rows = [{"context": f"{i}+1?", "answer": str(i + 1), "why": "add"} for i in range(3)]
    gen = load_task(
        str(
            write_task(
                tmp_path / "g",
                gen_rows,
                type="generation",
                prompt="Q: {context}\nA:",
                target="{why}. The answer is {answer}.",
            )
        )
    )
    prompt = build_prompts(TaskData.load(gen), 1)[0]
    assert prompt.gold == "1" and prompt.prompt.endswith("Q: 0+1?\nA:")
    assert "A: add. The answer is" in prompt.prompt


def test_bad_input_is_refused_with_the_place_and_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'piqa'"):
        load_task("piqaa")
    path = write_task(tmp_path / "f", MINI, promt="{query}")
    with pytest.raises(ConfigError, match="unknown field 'promt'; did you mean 'prompt'"):
        load_task(str(path))
    path = write_task(tmp_path / "r", MINI, fields={"gold": "gld"})
    with pytest.raises(DataError, match=r"mini.jsonl, line 1: .*'gld'.*did you mean 'gold'"):
        TaskData.load(load_task(str(path)))
    path = write_task(tmp_path / "p", MINI, prompt="{qeury}")
    with pytest.raises(DataError, match="did you mean 'query'"):
        TaskData.load(load_task(str(path)))
    broken = tmp_path / "b"
    write_task(broken, MINI)
    lines = (broken / "mini.jsonl").read_text().splitlines()
    lines[2] = lines[2][:-3]
    (broken / "mini.jsonl").write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"mini.jsonl, line 3: not valid JSON"):
        read_jsonl(broken / "mini.jsonl")
    empty = write_task(tmp_path / "e", [])
    (tmp_path / "e" / "mini.jsonl").write_text("\n")
    with pytest.raises(DataError, match="holds no examples; an empty task is refused"):
        TaskData.load(load_task(str(empty)))
    bad_gold = write_task(tmp_path / "g", [{"query": "q", "choices": ["a", "b"], "gold": 2}])
    with pytest.raises(DataError, match="gold 2 is not an index"):
        TaskData.load(load_task(str(bad_gold)))
    with pytest.raises(DataError, match=r"not found; looked in .*nowhere"):
        find_eval_file("missing.jsonl", tmp_path / "nowhere")


def test_missing_data_says_where_it_looked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TESSERA_DATA_DIR", str(tmp_path / "root"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as caught:
        find_eval_file("no-such-task.jsonl")
    message = str(caught.value)
    assert str(tmp_path / "root" / "eval") in message and "TESSERA_DATA_DIR" in message
    (tmp_path / "root" / "eval").mkdir(parents=True)
    (tmp_path / "root" / "eval" / "no-such-task.jsonl").write_text("{}\n")
    assert find_eval_file("no-such-task.jsonl") == tmp_path / "root" / "eval" / "no-such-task.jsonl"


def test_cli_bad_input_exits_2_without_a_traceback(trained_run: Path, tmp_path: Path) -> None:
    def tessera(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tessera.cli", "eval", *arguments],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )

    done = tessera(str(trained_run), "--tasks", "pika")
    assert done.returncode == 2 and "did you mean 'piqa'" in done.stderr
    assert "Traceback" not in done.stderr
    bare = tmp_path / "bare"
    from tessera.models.gpt import load_gpt, save_gpt

    model = load_gpt(trained_run)
    model.tokenizer = None
    save_gpt(model, bare)
    from tessera.cli.main import main

    with pytest.raises(UserError, match="pass --tokenizer"):
        from tessera.eval.models import load_model

        load_model(str(bare), device="cpu")
    assert (
        main(
            [
                "eval",
                str(bare),
                "--tasks",
                "copa",
                "--limit",
                "2",
                "--tokenizer",
                "byte",
                "--no-progress",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
