"""The engine: continuous batching reproduces each model's own greedy decoding, seeds, stops."""

from __future__ import annotations

import logging
import time

import pytest
import torch
from serve_support import greedy_reference, tiny_gpt

from tessera.core.errors import UserError
from tessera.data.text.documents import render_chat
from tessera.data.text.tokenizers import ByteTokenizer
from tessera.serve.chat_template import DEFAULT_TEMPLATE, ChatTemplate, find_template, save_template
from tessera.serve.decode_step import bucket
from tessera.serve.detokenize import TextStream
from tessera.serve.engine import Engine, EngineConfig
from tessera.serve.generate import generate_ids, generate_text
from tessera.serve.kv_cache import SlotKVCache, slots_for_budget
from tessera.serve.offline import Completion, Job, run_jobs
from tessera.serve.sampling import Sampling, filter_logits, gumbel_noise, row_options, sample_rows

GREEDY = Sampling(max_new_tokens=12, temperature=0.0, ignore_eos=True)


def staggered(engine: Engine, prompts: list[list[int]], sampling: Sampling) -> list[Completion]:
    """Submit one prompt, step a few times, submit the next...: sequences join a running batch."""
    results = [Completion() for _ in prompts]
    for index, prompt in enumerate(prompts):
        engine.submit(prompt, sampling, results[index].add)
        for _ in range(3):
            engine.step()
    engine.run_until_done()
    return results


@pytest.mark.parametrize("overlap", [True, False], ids=["overlap", "in-turn"])
@pytest.mark.parametrize("style", ["learned", "rope", "alibi"])
def test_continuous_batching_equals_the_models_own_greedy_forward(
    style: str, overlap: bool
) -> None:
    model = tiny_gpt(style, max_seq_len=64)
    # Two slots for four sequences: later ones wait, join when one leaves; a 3-token prefill
    # chunk spreads the 20-token prompt over steps while the others decode. With overlap,
    # each decode step starts before the previous one's tokens are read back.
    config = EngineConfig(max_batch=2, prefill_chunk=3, overlap=overlap)
    engine = Engine(model, model.tokenizer, config)
    prompts = [
        model.tokenizer.encode(t) for t in ("ROMEO:", "O Romeo, Romeo, wherefore", "J", "Hi")
    ]
    results = staggered(engine, prompts, GREEDY)
    for prompt, result in zip(prompts, results):
        assert result.token_ids == greedy_reference(model, prompt, 12)
        assert result.finish_reason == "length" and result.completion_tokens == 12
    assert not engine.running and sorted(engine._free) == [0, 1]


def test_padded_decode_buckets_used_by_cuda_graphs_give_the_same_tokens() -> None:
    """On GPU the decode batch and key length are rounded up to buckets (idle rows write to the
    scratch column); the same shapes on CPU must not change a token."""
    model = tiny_gpt("rope", max_seq_len=64)
    engine = Engine(model, model.tokenizer, EngineConfig(max_batch=5, prefill_chunk=4))
    engine.decode.shape_for = lambda rows, longest: (bucket(rows, 1, 5), bucket(longest, 16, 64))
    prompts = [model.tokenizer.encode(t) for t in ("ROMEO: But", "JULIET", "O", "soft, what light")]
    results = staggered(engine, prompts, GREEDY)
    assert [r.token_ids for r in results] == [greedy_reference(model, p, 12) for p in prompts]


def test_generation_past_the_context_slides_like_the_reference_decoder() -> None:
    model = tiny_gpt("learned", max_seq_len=24)
    sampling = Sampling(max_new_tokens=30, temperature=0.0)
    prompts = ["ROMEO: But soft", "Hi"]
    reference = generate_ids(
        model,
        [model.tokenizer.encode(p) for p in prompts],
        sampling,
        eos_id=model.tokenizer.eos_id,
        use_cache=False,
    )
    texts = generate_text(model, model.tokenizer, prompts, sampling)
    assert texts == [model.tokenizer.decode(ids) for ids in reference]
    assert max(len(t) for t in texts) == 30  # 15 + 30 tokens: well past the context of 24


def test_a_seed_gives_the_same_text_alone_and_in_a_busy_batch() -> None:
    model = tiny_gpt("learned", max_seq_len=64)
    prompt = model.tokenizer.encode("ROMEO:")
    seeded = Sampling(
        max_new_tokens=15, temperature=1.0, top_k=20, top_p=0.95, seed=7, ignore_eos=True
    )
    alone = run_jobs(
        Engine(model, model.tokenizer, EngineConfig(max_batch=1)), [Job(prompt, seeded)]
    )
    others = [
        Job(model.tokenizer.encode("JULIET: O"), Sampling(max_new_tokens=9, temperature=0.7))
    ] * 3
    busy = run_jobs(
        Engine(model, model.tokenizer, EngineConfig(max_batch=4)), [*others, Job(prompt, seeded)]
    )
    assert busy[-1].token_ids == alone[0].token_ids
    in_turn = Engine(model, model.tokenizer, EngineConfig(max_batch=4, overlap=False))
    assert run_jobs(in_turn, [*others, Job(prompt, seeded)])[-1].token_ids == alone[0].token_ids
    second_choice = run_jobs(Engine(model, model.tokenizer), [Job(prompt, seeded, choice=1)])[0]
    other_seed = Sampling(**{**seeded.__dict__, "seed": 8})
    other = run_jobs(Engine(model, model.tokenizer), [Job(prompt, other_seed)])[0]
    assert second_choice.token_ids != alone[0].token_ids
    assert other.token_ids != alone[0].token_ids


def test_batched_sampler_honours_each_rows_options() -> None:
    logits = torch.tensor([[0.0, 3.0, 2.9, -5.0]] * 3)
    rows = [
        (Sampling(temperature=1.0, top_k=1), 1),
        (Sampling(temperature=1.0, top_p=0.6), 2),
        (Sampling(temperature=0.0), 3),
    ]
    options = row_options(rows, 4, logits.device)
    kept = filter_logits(logits, options.top_k, options.top_p).isfinite()
    assert kept.tolist() == [[False, True, False, False], [False, True, True, False], [True] * 4]
    drawn = {
        tuple(
            sample_rows(
                logits, row_options([(s, k + 100 * i) for s, k in rows], 4, logits.device)
            ).tolist()
        )
        for i in range(60)
    }
    assert (
        {d[0] for d in drawn} == {1}
        and {d[1] for d in drawn} == {1, 2}
        and {d[2] for d in drawn} == {1}
    )
    # The Gumbel-max draw follows softmax(logits): 4000 keys, frequencies within 3%.
    probs = torch.tensor([0.5, 0.3, 0.2])
    keys = torch.arange(4000, dtype=torch.int64) * 7919
    picks = (probs.log().unsqueeze(0) + gumbel_noise(keys, 3)).argmax(-1)
    frequencies = torch.bincount(picks, minlength=3).float() / 4000
    assert torch.allclose(frequencies, probs, atol=0.03)


def test_text_stream_never_sends_part_of_a_stop_sequence_or_of_a_character() -> None:
    tokenizer = ByteTokenizer()
    stream = TextStream(tokenizer, stop=["STOP", "é!"])
    pieces = [stream.push(b) for b in "héllo wé STOP after".encode()]
    assert "".join(pieces) == "héllo wé " and stream.stopped
    assert all("\ufffd" not in piece for piece in pieces)
    assert not any(piece.endswith(("S", "ST", "STO")) for piece in pieces)
    free = TextStream(tokenizer, stop=["zz"])
    sent = "".join(free.push(b) for b in b"end z")
    assert sent == "end " and free.finish() == "z"  # a held-back tail comes out at the end


def test_end_of_text_stops_a_sequence_unless_ignored() -> None:
    model = tiny_gpt("learned", max_seq_len=64)
    prompt = model.tokenizer.encode("ROMEO:")
    free = greedy_reference(model, prompt, 10)
    engine = Engine(model, model.tokenizer)
    engine.eos_id = free[4]  # pretend the fifth greedy token is end-of-text
    stopped = run_jobs(engine, [Job(prompt, Sampling(max_new_tokens=10, temperature=0.0))])[0]
    assert stopped.token_ids == free[: free.index(free[4])] and stopped.finish_reason == "stop"
    ignored = run_jobs(engine, [Job(prompt, GREEDY)])[0]
    assert ignored.token_ids == greedy_reference(model, prompt, 12)


def test_abort_frees_the_slot_for_the_next_request() -> None:
    model = tiny_gpt("learned", max_seq_len=256)
    engine = Engine(model, model.tokenizer, EngineConfig(max_batch=1))
    long = Completion()
    first = engine.submit(
        model.tokenizer.encode("ROMEO:"),
        Sampling(max_new_tokens=200, temperature=0.0, ignore_eos=True),
        long.add,
    )
    for _ in range(3):
        engine.step()
    engine.abort(first)
    short = run_jobs(engine, [Job(model.tokenizer.encode("Hi"), GREEDY)], slide=False)[0]
    assert long.finish_reason == "abort" and long.completion_tokens < 10
    assert short.token_ids == greedy_reference(model, model.tokenizer.encode("Hi"), 12)


def test_memory_budget_limits_the_slots_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    model = tiny_gpt("learned", max_seq_len=64)
    per_slot = 2 * 2 * 4 * 8 * 65 * 4  # keys+values, layers, heads, head_dim, columns, fp32
    with caplog.at_level(logging.WARNING, logger="tessera.serve"):
        engine = Engine(
            model, model.tokenizer, EngineConfig(max_batch=8, kv_memory_bytes=3 * per_slot)
        )
    assert engine.slots == 3 and "holds 3 sequences" in caplog.text
    with pytest.raises(UserError, match=r"needs .* MiB for one sequence"):
        slots_for_budget(8, per_slot, per_slot - 1)


def test_requests_that_cannot_fit_are_refused_by_name() -> None:
    model = tiny_gpt("learned", max_seq_len=32)
    engine = Engine(model, model.tokenizer)
    with pytest.raises(UserError, match=r"prompt: 32 tokens.*at most 31"):
        engine.check_request([1] * 32, GREEDY)
    with pytest.raises(UserError, match=r"max_tokens: 30 new tokens .* at most 22"):
        engine.check_request([1] * 10, Sampling(max_new_tokens=30))
    with pytest.raises(UserError, match="empty"):
        engine.check_request([], GREEDY)


@pytest.mark.parametrize("style", ["learned", "rope", "alibi"])
def test_run_with_positions_over_a_slot_cache_equals_each_sequence_alone(style: str) -> None:
    """GPT.run(positions=...): rows at different lengths in one pass, keys in their slots."""
    model = tiny_gpt(style, max_seq_len=32)
    config = model.config
    cache = SlotKVCache(
        config.n_layer, 3, config.kv_heads, config.head_dim, 32, "cpu", torch.float32
    )
    sequences = [torch.randint(0, config.vocab_size, (n,)) for n in (9, 4, 13)]
    with torch.no_grad():
        for slot, ids in enumerate(sequences):  # prefill all but the last token of each
            head = ids[:-1].unsqueeze(0)
            span = torch.arange(head.shape[1]).unsqueeze(0)
            step = cache.step(torch.tensor([slot]), span, head.shape[1])
            model.run(head, cache=step, positions=span)
        lasts = torch.stack([ids[-1:] for ids in sequences])
        positions = torch.tensor([[len(ids) - 1] for ids in sequences])
        logits = model.run(lasts, cache=cache.step(3, positions, 13), positions=positions)
        for row, ids in enumerate(sequences):
            alone = model.run(ids.unsqueeze(0))[0, -1]
            torch.testing.assert_close(logits[row, -1], alone, rtol=1e-4, atol=1e-4)


def test_a_request_past_its_timeout_ends_with_an_error() -> None:
    model = tiny_gpt("learned", max_seq_len=256)
    engine = Engine(model, model.tokenizer, EngineConfig(request_timeout=0.05))
    result = Completion()
    long = Sampling(max_new_tokens=250, temperature=0.0, ignore_eos=True)
    engine.submit(model.tokenizer.encode("ROMEO:"), long, result.add)
    deadline = time.monotonic() + 30
    while engine.has_work() and time.monotonic() < deadline:
        engine.step()
        time.sleep(0.002)  # at least 125 steps' sleep: past the 0.05 s limit long before 250
    assert result.finish_reason == "timeout" and result.completion_tokens < 250
    assert not engine.running


def test_chat_templates_are_data_and_refused_when_malformed(tmp_path) -> None:
    template = ChatTemplate(
        roles={"user": "<u>{content}</u>"}, generation_prompt="<a>", stop=["</a>"]
    )
    folder = save_template(template, tmp_path).parent
    loaded = find_template(folder)
    assert (
        loaded.render([("user", "{content} {0}"), ("system", "s")])
        == "<u>{content} {0}</u><u>s</u><a>"
    )
    assert loaded.stop == ["</a>"] and find_template(tmp_path / "none") is DEFAULT_TEMPLATE
    (tmp_path / "chat_template.json").write_text(
        '{"format": "tessera-chat", "roles": {"user": "no slot"}}'
    )
    with pytest.raises(UserError, match=r"roles.user must be a string with \{content\}"):
        find_template(tmp_path)


def test_the_default_template_renders_chat_as_tessera_tokenizes_chat_data() -> None:
    messages = [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    document = render_chat(messages, "test")
    pairs = [(m["role"], m["content"]) for m in messages[:-1]]
    assert DEFAULT_TEMPLATE.render(pairs) == document.prompt
