"""Serving speed: Tessera's HTTP server vs transformers `generate`, beside the bandwidth bound.

For each shape (gpt-125m, gpt-1b; random bf16 weights, the speed does not depend on them) and
each number of concurrent clients (1, 8, 32, 64), in one process:

* Tessera through the real HTTP server (uvicorn + FastAPI on loopback, CUDA-graph decode):
  `serve_load.py` client processes stream `--requests` completions per client of
  `--max-tokens` tokens after a `--prompt-len`-token prompt, ignoring end-of-text; aggregate
  tokens/s, time to first token and inter-token latency (p50/p99).
* Tessera's engine in-process (no HTTP), the same sequences: what HTTP costs.
* transformers `generate` (greedy, KV cache, the same weights moved over by the HF export
  mapping) on a batch of that many prompts: tokens/s, time to first token, inter-token.
* The memory-bandwidth bound: a decode step must read every weight plus each sequence's
  keys/values once, so tokens/s <= batch x bandwidth / bytes per step (bandwidth measured
  here with a device-to-device copy, and the H200's 4.8 TB/s).

Writes `serve.json` and `serve.md` into `--out`. `--smoke` runs a tiny shape on CPU (< 1 min).

    python benchmarks/serve_benchmark.py --out results/ [--smoke]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tessera.data.text.tokenizers import CharTokenizer  # noqa: E402
from tessera.models.gpt import GPT, GPTConfig  # noqa: E402
from tessera.serve.engine import Engine, EngineConfig  # noqa: E402
from tessera.serve.loading import cast_weights  # noqa: E402
from tessera.serve.offline import Job, run_jobs  # noqa: E402
from tessera.serve.sampling import Sampling  # noqa: E402

H200_BANDWIDTH = 4.8e12
SMOKE_SHAPE = {"n_layer": 2, "n_head": 4, "d_model": 64, "vocab_size": 512}


def build(name: str, device: str, dtype: torch.dtype, capacity: int) -> GPT:
    """A random GPT of the preset's shape whose tokenizer maps every id to one character."""
    shape = SMOKE_SHAPE if name == "smoke" else {"preset": name, "vocab_size": 50304}
    config = GPTConfig(**shape, max_seq_len=2048 if name != "smoke" else capacity)
    # One character per id (from U+0100, below the surrogates): every token shows in a chunk.
    tokenizer = CharTokenizer([chr(256 + i) for i in range(config.vocab_size - 1)], eos=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = GPT(config, tokenizer=tokenizer)
    return cast_weights(model, dtype).eval()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def throughput(system: str, clients: int, tokens: int, seconds: float) -> dict:
    return {
        "system": system,
        "clients": clients,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
    }


def summarise(starts, firsts, ends, gaps, tokens) -> dict:
    wall = max(ends) - min(starts)
    return {
        "tokens": tokens,
        "seconds": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
        "ttft_p50_ms": round(1e3 * percentile([f - s for f, s in zip(firsts, starts)], 50), 2),
        "ttft_p99_ms": round(1e3 * percentile([f - s for f, s in zip(firsts, starts)], 99), 2),
        "itl_p50_ms": round(1e3 * percentile(gaps, 50), 3),
        "itl_p99_ms": round(1e3 * percentile(gaps, 99), 3),
    }


# -- Tessera over HTTP -----------------------------------------------------------------------


def http_load(port: int, clients: int, args: argparse.Namespace, vocab: int) -> dict:
    """Run `clients` streaming clients spread over client processes; aggregate their records."""
    processes = max(1, min(clients, args.client_procs))
    begin = time.time() + 3.0  # every process starts at once, after start-up and warm-up
    share = [clients // processes + (i < clients % processes) for i in range(processes)]
    running = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "serve_load.py"),
                "--url",
                f"http://127.0.0.1:{port}/v1",
                "--model",
                "bench",
                "--clients",
                str(n),
                "--requests",
                str(args.requests),
                "--prompt-len",
                str(args.prompt_len),
                "--max-tokens",
                str(args.max_tokens),
                "--vocab",
                str(vocab - 1),
                "--seed",
                str(i),
                "--begin",
                str(begin),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, n in enumerate(share)
    ]
    records = [r for p in running for r in json.loads(p.communicate(timeout=300)[0])["records"]]
    errors = [r["error"] for r in records if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    starts, firsts, ends, gaps, tokens = [], [], [], [], 0
    for record in records:
        chunks = record["chunks"]
        count = sum(n for _, n in chunks)
        if record["usage"]["completion_tokens"] != count or count != args.max_tokens:
            raise RuntimeError(f"a request streamed {count} tokens, usage says {record['usage']}")
        tokens += count
        starts.append(record["start"])
        firsts.append(chunks[0][0])
        ends.append(chunks[-1][0])
        for (before, _), (after, n) in itertools.pairwise(chunks):
            gaps += [(after - before) / n] * n  # a chunk of n tokens: n gaps of equal share
    return summarise(starts, firsts, ends, gaps, tokens)


def tessera_http(model: GPT, levels: list[int], args: argparse.Namespace) -> list[dict]:
    from tessera.serve.chat_template import DEFAULT_TEMPLATE
    from tessera.serve.server import Server, bind, make_state

    config = EngineConfig(
        max_batch=max(levels),
        max_model_len=args.prompt_len + args.max_tokens + 8,
        max_queue=4096,
        cuda_graphs=not args.no_cuda_graphs,
    )
    state = make_state(model, DEFAULT_TEMPLATE, "bench", config)
    started = time.perf_counter()
    state.engine.warm_up()
    warm = time.perf_counter() - started
    server = Server(state, bind("127.0.0.1", 0)).start()
    rows = []
    try:
        http_load(
            server.port,
            2,
            argparse.Namespace(**{**vars(args), "requests": 1}),
            model.config.vocab_size,
        )
        for interval in [float(ms) for ms in args.gil_switch_ms.split(",")]:
            sys.setswitchinterval(interval / 1000)  # the server set its own; each variant its
            for clients in levels:
                row = {
                    "system": "tessera-http",
                    "clients": clients,
                    **http_load(server.port, clients, args, model.config.vocab_size),
                }
                row["warm_up_s"] = round(warm, 2)
                row["cuda_graphs"] = state.engine.decode.use_graphs
                row["gil_switch_ms"] = interval
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        server.stop()
    return rows


def tessera_engine(model: GPT, levels: list[int], args: argparse.Namespace) -> list[dict]:
    """The engine in this process (no HTTP), with and without overlapping decode steps."""
    engines = {}
    for overlap in (True, False):
        config = EngineConfig(
            max_batch=max(levels),
            max_model_len=args.prompt_len + args.max_tokens + 8,
            cuda_graphs=not args.no_cuda_graphs,
            overlap=overlap,
        )
        engines[overlap] = Engine(model, model.tokenizer, config)
        engines[overlap].warm_up()
    sampling = Sampling(max_new_tokens=args.max_tokens, temperature=0.0, ignore_eos=True)
    generator = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size - 1
    rows = []
    for clients in levels:
        prompts = [
            torch.randint(0, vocab, (args.prompt_len,), generator=generator).tolist()
            for _ in range(clients)
        ]
        jobs = [Job(prompt, sampling) for prompt in prompts]
        speeds = {}
        for overlap, engine in engines.items():
            run_jobs(engine, jobs[:2], slide=False)
            steps = engine.steps
            started = time.perf_counter()
            results = run_jobs(engine, jobs * args.requests, slide=False)
            sync()
            seconds = time.perf_counter() - started
            tokens = sum(r.completion_tokens for r in results)
            speeds[overlap] = (tokens, seconds, engine.steps - steps)
        tokens, seconds, steps = speeds[True]
        row = throughput("tessera-engine", clients, tokens, seconds)
        row["step_ms"] = round(1e3 * seconds / max(steps, 1), 3)
        in_turn_tokens, in_turn_seconds, _ = speeds[False]
        row["tokens_per_s_in_turn"] = round(in_turn_tokens / in_turn_seconds, 1)
        key_length = args.prompt_len + args.max_tokens // 2
        row["decode_forward_ms"] = round(1e3 * forward_time(engines[True], clients, key_length), 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def forward_time(engine: Engine, batch: int, key_length: int) -> float:
    """Seconds of the decode forward alone (a graph replay on GPU) at this batch and key
    length: the GPU's share of a step, the rest of `step_ms` is host work."""
    decode = engine.decode
    shape = decode.shape_for(batch, key_length)
    decode.write_at[: shape[0]] = engine.cache.scratch  # timing writes touch no real slot
    with torch.no_grad():
        if decode.use_graphs and shape in decode._graphs:
            run = decode._graphs[shape][0].replay  # the graph: (CUDAGraph, outputs)
        else:

            def run() -> None:
                decode._forward(shape)

        for _ in range(3):
            run()
        sync()
        started = time.perf_counter()
        for _ in range(20):
            run()
        sync()
    return (time.perf_counter() - started) / 20


# -- transformers ----------------------------------------------------------------------------


def hf_generate(model: GPT, levels: list[int], args: argparse.Namespace) -> list[dict]:
    from transformers import AutoModelForCausalLM
    from transformers.generation.streamers import BaseStreamer

    from tessera.models.gpt.hf_export import hf_config, hf_state_dict

    config = hf_config(model.config, eos_id=None)
    device, dtype = model.embed.weight.device, model.embed.weight.dtype
    with torch.device(device):
        hf = AutoModelForCausalLM.from_config(config)
    hf.load_state_dict(hf_state_dict(model), strict=False)
    hf = hf.to(device=device, dtype=dtype).eval()  # wherever from_config built it

    class Clock(BaseStreamer):
        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value: torch.Tensor) -> None:
            sync()
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    rows = []
    for clients in levels:
        ids = torch.randint(
            0, model.config.vocab_size - 1, (clients, args.prompt_len), device=device
        )
        options = {  # no end-of-text: every row runs max_tokens, as the server's requests do
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": args.max_tokens,
            "do_sample": False,
            "pad_token_id": 0,
            "eos_token_id": None,
        }
        with torch.no_grad():
            hf.generate(ids, **{**options, "max_new_tokens": 4})
            clock = Clock()
            started = time.perf_counter()
            out = hf.generate(ids, streamer=clock, **options)
            sync()
        seconds = time.perf_counter() - started
        tokens = (out.shape[1] - args.prompt_len) * clients
        token_times = clock.times[1:]  # the first put() is the prompt itself
        gaps = [b - a for a, b in itertools.pairwise(token_times)]
        row = {
            **throughput("transformers", clients, tokens, seconds),
            "ttft_p50_ms": round(1e3 * (token_times[0] - started), 2),
            "itl_p50_ms": round(1e3 * percentile(gaps, 50), 3),
            "itl_p99_ms": round(1e3 * percentile(gaps, 99), 3),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    del hf
    return rows


# -- the bound -------------------------------------------------------------------------------


def measured_bandwidth(device: str) -> float | None:
    """Bytes read + written per second by a 2 GiB device-to-device copy."""
    if device != "cuda":
        return None
    source = torch.empty(2**30, dtype=torch.bfloat16, device=device)
    target = torch.empty_like(source)
    for _ in range(3):
        target.copy_(source)
    sync()
    started = time.perf_counter()
    for _ in range(10):
        target.copy_(source)
    sync()
    return 10 * 2 * source.numel() * 2 / (time.perf_counter() - started)


def bound(model: GPT, clients: int, args: argparse.Namespace, bandwidth: float) -> float:
    """Tokens/s if a decode step took only the time to read weights + keys/values once."""
    c = model.config
    element = model.embed.weight.element_size()
    weights = (
        c.matmul_parameters() * element
    )  # the blocks and the output layer (embedding rows: a gather)
    mean_context = args.prompt_len + args.max_tokens / 2
    kv = clients * mean_context * 2 * c.n_layer * c.kv_heads * c.head_dim * element
    return clients * bandwidth / (weights + kv)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


COLUMNS = [
    "clients",
    "Tessera HTTP tok/s",
    "TTFT p50 / p99 ms",
    "ITL p50 / p99 ms",
    "HTTP tok/s at other GIL switch intervals",
    "engine in-process tok/s (overlap / in turn)",
    "engine step / decode forward ms",
    "transformers tok/s",
    "transformers TTFT / ITL p50 ms",
    "bound tok/s (measured BW / 4.8 TB/s)",
]


def markdown(results: dict) -> str:
    lines = [f"# Serving benchmark\n\n{results['machine']}\n", f"{results['settings']}\n"]
    for shape, data in results["shapes"].items():
        lines.append(f"\n## {shape} ({data['parameters']:,} parameters, {data['dtype']})\n")
        for part, error in data["errors"].items():
            lines.append(f"**{part} failed:** {error}\n")
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("|" + " --- |" * len(COLUMNS))
        by = {(r["system"], r["clients"]): r for r in reversed(data["rows"])}  # first wins
        for clients in data["levels"]:
            http = by.get(("tessera-http", clients), {})
            others = [
                f"{r['tokens_per_s']:,} ({r['gil_switch_ms']} ms)"
                for r in data["rows"]
                if r["system"] == "tessera-http"
                and r["clients"] == clients
                and r.get("gil_switch_ms") != http.get("gil_switch_ms")
            ]
            engine = by.get(("tessera-engine", clients), {})
            hf = by.get(("transformers", clients), {})
            b = data["bound"][str(clients)]

            def get(row: dict, key: str) -> str:
                value = row.get(key, "-")
                return (
                    f"{value:,}"
                    if isinstance(value, float) and key == "tokens_per_s"
                    else str(value)
                )

            cells = [
                str(clients),
                get(http, "tokens_per_s"),
                f"{get(http, 'ttft_p50_ms')} / {get(http, 'ttft_p99_ms')}",
                f"{get(http, 'itl_p50_ms')} / {get(http, 'itl_p99_ms')}",
                ", ".join(others) or "-",
                f"{get(engine, 'tokens_per_s')} / {get(engine, 'tokens_per_s_in_turn')}",
                f"{get(engine, 'step_ms')} / {get(engine, 'decode_forward_ms')}",
                get(hf, "tokens_per_s"),
                f"{get(hf, 'ttft_p50_ms')} / {get(hf, 'itl_p50_ms')}",
                f"{b['measured']:,} / {b['spec']:,}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for serve.json and serve.md")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny shape on CPU, to check the script"
    )
    parser.add_argument("--shapes", default="gpt-125m,gpt-1b")
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument(
        "--gil-switch-ms",
        default="0.5,5",
        help="the HTTP server's GIL switch intervals to measure (ms; Python's default is 5)",
    )
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--client-procs", type=int, default=8, help="load-generator processes")
    parser.add_argument("--no-cuda-graphs", action="store_true")
    parser.add_argument("--skip-hf", action="store_true", help="leave out transformers")
    args = parser.parse_args()
    if args.smoke:
        args.shapes, args.clients, args.max_tokens, args.prompt_len, args.requests = (
            "smoke",
            "1,4",
            16,
            8,
            1,
        )
        args.client_procs = 2
        torch.set_num_threads(1)  # a tiny model: threads only add overhead
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    levels = [int(c) for c in args.clients.split(",")]
    bandwidth = measured_bandwidth(device)
    gpu = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else platform.processor() or platform.machine()
    )
    results = {
        "machine": f"{gpu}, torch {torch.__version__}, measured copy bandwidth "
        + (f"{bandwidth / 1e12:.2f} TB/s" if bandwidth else "n/a"),
        "settings": f"{args.prompt_len}-token prompts, {args.max_tokens} new tokens each "
        f"(end-of-text ignored), greedy, {args.requests} requests per client in turn; "
        "transformers: one batch of `clients` prompts",
        "shapes": {},
    }
    for shape in args.shapes.split(","):
        model = build(shape, device, dtype, args.prompt_len + args.max_tokens + 8)
        parts = [tessera_http, tessera_engine] + ([] if args.skip_hf else [hf_generate])
        rows, errors = [], {}
        for part in parts:
            try:
                rows += part(model, levels, args)
            except Exception as error:  # keep the other systems' numbers; say what failed
                traceback.print_exc()
                errors[part.__name__] = f"{type(error).__name__}: {error}"
        results["shapes"][shape] = {
            "errors": errors,
            "parameters": model.config.num_parameters(),
            "dtype": str(dtype).removeprefix("torch."),
            "levels": levels,
            "rows": rows,
            "bound": {
                str(c): {
                    "measured": round(bound(model, c, args, bandwidth or H200_BANDWIDTH)),
                    "spec": round(bound(model, c, args, H200_BANDWIDTH)),
                }
                for c in levels
            },
        }
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
        write(results, Path(args.out))  # after each shape: a later failure keeps this one
    print(markdown(results))


def write(results: dict, out: Path) -> None:
    """serve.json, serve.md, and per shape serve-SHAPE.json in the format `tessera estimate`'s
    serving cost reads (`--benchmark`): the HTTP server's tokens/s per concurrency."""
    out.mkdir(parents=True, exist_ok=True)
    files = [("serve.json", json.dumps(results, indent=1)), ("serve.md", markdown(results))]
    for shape, data in results["shapes"].items():
        points = [
            {"concurrency": r["clients"], "tokens_per_second": r["tokens_per_s"]}
            for r in data["rows"]
            if r["system"] == "tessera-http"
        ]
        files.append((f"serve-{shape}.json", json.dumps({"results": points}, indent=1)))
    for name, text in files:
        temporary = out / (name + ".tmp")
        temporary.write_text(text)
        temporary.replace(out / name)


if __name__ == "__main__":
    main()
