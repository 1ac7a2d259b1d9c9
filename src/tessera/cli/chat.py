"""`tessera chat RUN`: talk to a trained language model in the terminal.

Each line typed is a user message; the reply streams as it is generated, with the model's chat
template (or the default). `/reset` forgets the conversation, `/exit` or end of input quits.
When the conversation outgrows the context, the oldest turns are dropped, and this is said.
"""

from __future__ import annotations

import argparse
import sys

from tessera.cli.options import COUNT, SEED, SHARE, TEMPERATURE
from tessera.cli.serve import add_engine_options


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="chat with a trained language model in the terminal",
        description="Chat with an exported GPT (run folder or model folder), one line per "
        "message; replies stream as they are generated. /reset starts over, /exit quits.",
    )
    parser.add_argument("checkpoint", nargs="?", help="run folder or folder with model.safetensors")
    parser.add_argument("--system", default=None, help="a system message to start with")
    parser.add_argument("--max-new-tokens", type=COUNT, default=200, help="longest reply")
    parser.add_argument("--temperature", type=TEMPERATURE, default=0.8, help="0 = greedy")
    parser.add_argument("--top-k", type=COUNT, default=None, help="sample among the k best")
    parser.add_argument("--top-p", type=SHARE, default=None, help="nucleus sampling mass")
    parser.add_argument("--seed", type=SEED, default=None, help="seed for sampling")
    add_engine_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tessera.cli.serve import chat_template, engine_config
    from tessera.core.errors import UserError
    from tessera.serve.engine import Engine
    from tessera.serve.loading import load_model
    from tessera.serve.offline import Job, run_jobs
    from tessera.serve.sampling import Sampling

    model, folder = load_model(args.checkpoint, args.hf, args.device, args.dtype)
    template = chat_template(args, folder)
    config = engine_config(args)
    config.max_batch = 1
    engine = Engine(model, model.tokenizer, config)
    system = [("system", args.system)] if args.system else []
    history: list[tuple[str, str]] = []
    interactive = sys.stdin.isatty()
    print(f"chatting with {folder} (template: {template.source}); /reset, /exit", file=sys.stderr)
    turn = 0
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            return 0
        message = line.rstrip("\n")
        if message.strip() == "/reset":
            history.clear()
            print("(conversation cleared)", file=sys.stderr)
            continue
        history.append(("user", message))
        try:
            prompt = _fit(engine, template, system, history, args.max_new_tokens)
        except UserError as error:  # too long, or characters the tokenizer lacks: try again
            history.pop()
            print(f"error: {error}", file=sys.stderr)
            continue
        sampling = Sampling(
            max_new_tokens=min(args.max_new_tokens, engine.capacity - len(prompt)),
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            stop=template.stop,
            seed=None if args.seed is None else args.seed + turn,
        )
        print("model> ", end="", flush=True)

        def show(index: int, output: object) -> None:
            print(output.text, end="", flush=True)

        reply = run_jobs(engine, [Job(prompt, sampling)], slide=False, on_output=show)[0]
        print(flush=True)
        history.append(("assistant", reply.text.strip()))
        turn += 1


def _fit(engine, template, system, history, max_new_tokens: int) -> list[int]:
    """The prompt ids, dropping the oldest turns (said aloud) until a reply has room."""
    from tessera.core.errors import UserError

    room = min(max_new_tokens, engine.capacity // 2)
    while True:
        ids = engine.encode(template.render(system + history))
        if len(ids) + room <= engine.capacity:
            return ids
        if len(history) <= 1:
            raise UserError(
                f"the message alone is {len(ids)} tokens; the model's context holds "
                f"{engine.capacity}. Send a shorter one."
            )
        del history[:2]
        print("(oldest turns dropped to fit the context)", file=sys.stderr)
