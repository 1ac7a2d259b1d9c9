"""`tessera train RECIPE.yaml [key=value ...]`: run a recipe; run it again to resume.

With `--nproc`/`--nnodes`/... it starts the processes through torchrun's elastic agent
(`tessera.launch.local`); each of them, like a process `torchrun -m tessera.cli train` starts,
joins the process group and trains its part.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from tessera.cli.options import COUNT, NON_NEGATIVE, PORT, PRICE
from tessera.core.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train from a recipe (run the same command again to resume)",
        description="Train from a recipe. Overrides are key=value or dotted "
        "(max_duration=2ep model.width=32). A run folder runs/<name>/ receives the resolved "
        "config, metrics.jsonl, checkpoints and the final model. --nproc N trains on N "
        "processes (one per GPU) through torchrun; see docs/distributed.md.",
    )
    parser.add_argument("recipe", help="run file (YAML)")
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="key=value overrides (options may follow)"
    )
    _add_scale_options(parser.add_argument_group("multi-process (torchrun's elastic agent)"))
    _add_cost_option(parser)
    parser.set_defaults(func=run)


def _add_cost_option(parser: Any) -> None:
    parser.add_argument(
        "--price",
        type=PRICE,
        help="dollars per GPU hour: show $ spent and projected beside the ETA, write cost.json "
        "(= callbacks.cost_monitor.price_per_gpu_hour=PRICE)",
    )


def _add_scale_options(group: Any) -> None:
    group.add_argument("--nproc", type=COUNT, default=1, help="processes per node (one per GPU)")
    group.add_argument("--nnodes", default="1", help="nodes, or MIN:MAX for an elastic run")
    group.add_argument(
        "--node-rank", type=NON_NEGATIVE, default=0, help="this node's rank (static)"
    )
    group.add_argument("--master-addr", default=None, help="address of node 0 (static)")
    group.add_argument("--master-port", type=PORT, default=None, help="port on node 0 (static)")
    group.add_argument("--rdzv-endpoint", default=None, help="HOST:PORT to meet at (elastic)")
    group.add_argument("--rdzv-id", default=None, help="job id shared by all nodes (elastic)")
    group.add_argument(
        "--max-restarts",
        type=NON_NEGATIVE,
        default=0,
        help="restart the group after failures (resumes)",
    )


def _split_overrides(
    args: argparse.Namespace, add_options: Any = None, command: str = "tessera train"
) -> None:
    """Options written after the overrides (`RECIPE a=1 --nproc 2`) are options too."""
    late = argparse.ArgumentParser(
        prog=command, add_help=False, argument_default=argparse.SUPPRESS, exit_on_error=False
    )
    if add_options is None:
        _add_scale_options(late)
        _add_cost_option(late)
    else:
        add_options(late)
    try:
        found, rest = late.parse_known_args(args.overrides)
    except argparse.ArgumentError as error:  # a refused value: the option and what it takes
        raise UserError(f"{command}: {error}") from None
    for name, value in vars(found).items():
        setattr(args, name, value)
    unknown = [item for item in rest if "=" not in item or item.startswith("-")]
    if unknown:
        raise UserError(
            f"{command}: {' '.join(unknown)} is neither an option nor a key=value override; "
            f"see `{command} --help`"
        )
    args.overrides = rest


def run(args: argparse.Namespace) -> int:
    from tessera.config import load_config
    from tessera.launch.record import recorded_train  # run registry (tessera runs)
    from tessera.parallel.process_group import launched_by_torchrun

    _split_overrides(args)
    if args.price is not None:
        args.overrides.append(f"callbacks.cost_monitor.price_per_gpu_hour={args.price}")
    config = load_config(args.recipe, args.overrides)
    options = _launch_options(args)
    options.check_counts()
    if options.wants_launcher() and not launched_by_torchrun():
        from tessera.config.build import write_resolved_config
        from tessera.launch.local import check_options, check_world, launch

        check_options(options, config.device)
        check_world(config, options)
        write_resolved_config(config)
        folder = Path(config.run_dir or ".").absolute() / config.name
        return recorded_train(
            config,
            args.recipe,
            args.overrides,
            lambda: launch(args.recipe, list(args.overrides), options, folder),
        )
    if launched_by_torchrun():
        from torch.distributed.elastic.multiprocessing.errors import record

        try:  # an uncaught error reaches the launcher's report (record() keeps its traceback)
            code = recorded_train(
                config, args.recipe, args.overrides, lambda: record(_train)(config)
            )
        except Exception as error:
            code = _lost_contact(error)
        _exit_worker(code)
    return recorded_train(config, args.recipe, args.overrides, lambda: _train(config))


def _lost_contact(error: Exception) -> int:
    """A worker whose collective failed because another rank went away says so in one line
    (the launcher names the rank that died); any other error is raised as it is."""
    import os
    import sys

    from tessera.parallel.process_group import LOST_CONTACT_EXIT, lost_contact

    reason = lost_contact(error)
    if reason is None:
        raise error
    rank = os.environ.get("RANK", "?")
    details = os.environ.get("TORCHELASTIC_ERROR_FILE")
    print(
        f"rank {rank}: lost contact with the other ranks ({reason}); the launcher stops or "
        f"restarts the group" + (f" (traceback in {details})" if details else ""),
        file=sys.stderr,
    )
    return LOST_CONTACT_EXIT


def _exit_worker(code: int) -> None:
    """End a torchrun worker that finished: flush and leave without interpreter teardown.

    Tearing down gloo's threads at interpreter exit occasionally aborts a rank that has already
    finished ("terminate called without an active exception"), turning a good run into a
    failure; everything is written and the process group left by now, so skip that teardown.
    """
    import logging
    import os
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _launch_options(args: argparse.Namespace) -> Any:
    from tessera.launch.local import LaunchOptions

    return LaunchOptions(
        nproc=args.nproc,
        nnodes=str(args.nnodes),
        node_rank=args.node_rank,
        master_addr=args.master_addr,
        master_port=args.master_port,
        rdzv_endpoint=args.rdzv_endpoint,
        rdzv_id=args.rdzv_id,
        max_restarts=args.max_restarts,
    )


def _train(config: object) -> int:
    from tessera.config.build import build_trainer
    from tessera.launch.heartbeat import heartbeat

    trainer = None
    try:
        trainer = build_trainer(config)  # type: ignore[arg-type]
        start = time.perf_counter()
        beat = heartbeat(trainer.folder.root, trainer.state) if trainer.folder else nullcontext()
        with beat:  # for the watchdog's hang detection
            trainer.fit()
        state = trainer.state
        if state.rank == 0:
            summary = {
                "run": str(trainer.folder.root) if trainer.folder else None,
                "timestamp": state.timestamp.state_dict(),
                "eval": state.eval_results,
                "seconds": round(time.perf_counter() - start, 1),
                "final_model": str(trainer.folder.final) if trainer.folder else None,
                "resumed_from": str(trainer.resumed_from) if trainer.resumed_from else None,
                "stop_reason": state.stop_reason,
                "world_size": state.world_size,
            }
            print(json.dumps(summary), flush=True)
            if trainer.engine.profile:
                for event, hook, seconds, calls in trainer.engine.timing_report():
                    print(f"{seconds:9.3f}s {calls:7d}x  {event:<22} {hook}")
    finally:
        if trainer is not None:
            trainer.close()
        else:
            from tessera.parallel.process_group import stop

            stop()
    return 0
