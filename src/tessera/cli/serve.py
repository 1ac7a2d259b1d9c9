"""`tessera serve RUN`: an OpenAI-compatible HTTP server for a trained language model."""

from __future__ import annotations

import argparse

from tessera.cli.options import COUNT, DTYPE_CHOICES, PORT, POSITIVE, SHARE, device


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Model and engine options shared by `serve`, `chat` and batch `generate`."""
    group = parser.add_argument_group("model and engine")
    group.add_argument(
        "--hf", default=None, metavar="PATH", help="serve an imported Hugging Face model"
    )
    group.add_argument(
        "--device", type=device, default=None, help="cpu, cuda, cuda:1 ... (default: best found)"
    )
    group.add_argument(
        "--dtype", default="auto", choices=DTYPE_CHOICES, help="bf16 on GPU, else float32 (auto)"
    )
    group.add_argument("--max-batch", type=COUNT, default=64, help="sequences decoded together")
    group.add_argument(
        "--max-model-len",
        type=COUNT,
        default=None,
        help="tokens per sequence (default: the model's)",
    )
    group.add_argument(
        "--prefill-chunk", type=COUNT, default=None, help="prompt tokens fed per step"
    )
    group.add_argument(
        "--kv-memory-fraction", type=SHARE, default=0.85, help="of free GPU memory for the KV cache"
    )
    group.add_argument("--no-cuda-graphs", action="store_true", help="decode eagerly on GPU")
    group.add_argument(
        "--no-overlap", action="store_true", help="read each decode step back before the next"
    )
    group.add_argument(
        "--chat-template", default=None, metavar="FILE", help="chat_template.json to use"
    )


def engine_config(args: argparse.Namespace, **extra: object):  # -> EngineConfig
    from tessera.core.errors import UserError
    from tessera.serve.engine import EngineConfig

    for name in ("max_batch", "max_model_len", "prefill_chunk"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    if not 0.0 < args.kv_memory_fraction <= 1.0:
        raise UserError(f"--kv-memory-fraction must be in (0, 1], got {args.kv_memory_fraction}.")
    return EngineConfig(
        max_batch=args.max_batch,
        max_model_len=args.max_model_len,
        prefill_chunk=args.prefill_chunk,
        kv_memory_fraction=args.kv_memory_fraction,
        cuda_graphs=not args.no_cuda_graphs,
        overlap=not args.no_overlap,
        **extra,
    )


def chat_template(args: argparse.Namespace, folder: object):  # -> ChatTemplate
    from tessera.serve.chat_template import find_template, load_template

    return load_template(args.chat_template) if args.chat_template else find_template(folder)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a language model over an OpenAI-compatible HTTP API",
        description="Serve a trained GPT (run folder or exported model folder) at /v1/completions "
        "and /v1/chat/completions, with continuous batching and streaming. Needs "
        "pip install 'tessera-train[serve]'. See docs/serve.md.",
    )
    parser.add_argument("checkpoint", nargs="?", help="run folder or folder with model.safetensors")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: loopback only)"
    )
    parser.add_argument("--port", type=PORT, default=8000, help="port (0 = any free port)")
    parser.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1"
    )
    parser.add_argument(
        "--model-name", default=None, help="the name clients ask for (default: the folder's)"
    )
    parser.add_argument("--max-queue", type=COUNT, default=256, help="waiting requests before 429")
    parser.add_argument(
        "--max-prompt-tokens", type=COUNT, default=None, help="longest prompt accepted"
    )
    parser.add_argument(
        "--max-tokens", type=COUNT, default=None, help="largest max_tokens accepted"
    )
    parser.add_argument(
        "--request-timeout", type=POSITIVE, default=600.0, help="seconds a request may take"
    )
    add_engine_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    from tessera.core.errors import UserError
    from tessera.serve.loading import load_model
    from tessera.serve.server import Server, bind, make_state

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.api_key is None and os.environ.get("TESSERA_API_KEY"):
        args.api_key = os.environ["TESSERA_API_KEY"]
    if args.max_queue < 1:
        raise UserError(f"--max-queue must be >= 1, got {args.max_queue}.")
    sock = bind(args.host, args.port)  # before loading: a port in use fails in a second
    model, folder = load_model(args.checkpoint, args.hf, args.device, args.dtype)
    template = chat_template(args, folder)
    name = args.model_name or _default_name(args.checkpoint or args.hf)
    timeout = args.request_timeout if args.request_timeout > 0 else None
    config = engine_config(args, max_queue=args.max_queue, request_timeout=timeout)
    state = make_state(
        model, template, name, config, args.api_key, args.max_prompt_tokens, args.max_tokens
    )
    engine = state.engine
    engine.warm_up()
    host, port = sock.getsockname()[:2]
    print(
        f"serving {name!r} ({model.config.num_parameters():,} parameters, {engine.device}, "
        f"{next(model.parameters()).dtype}) on http://{host}:{port}/v1 — {engine.slots} "
        f"sequences of up to {engine.capacity} tokens, chat template: {template.source}"
        + (", API key required" if args.api_key else ""),
        flush=True,
    )
    Server(state, sock).run()
    return 0


def _default_name(path: str) -> str:
    from pathlib import Path

    folder = Path(path).resolve()
    return folder.parent.name if folder.name == "final" else folder.name
