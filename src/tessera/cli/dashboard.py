"""`tessera dashboard [--port 8050]`: the run registry as a local, read-only web page."""

from __future__ import annotations

import argparse

from tessera.cli.options import PORT


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="serve the runs as a local web page (read-only)",
        description="Serve a read-only page of every recorded run: status, attempts, and the "
        "loss, eval, throughput and cost curves of a run, refreshing while it is live. Bound "
        "to 127.0.0.1 unless --host says otherwise. See docs/runs.md.",
    )
    parser.add_argument("--port", type=PORT, default=8050, help="port (8050; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument(
        "--token", default=None, help="require ?token=TOKEN (or 'Authorization: Bearer TOKEN')"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tessera.core.errors import UserError
    from tessera.launch.dashboard import make_server
    from tessera.launch.registry import Registry

    console = Console(stderr=True)
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port: {args.port} is not a TCP port; give 0..65535")
    if args.host not in ("127.0.0.1", "localhost", "::1") and args.token is None:
        console.print(
            f"[bold yellow]warning[/]: serving on {args.host} without --token: anyone who can "
            "reach this address can read every run's record"
        )
    registry = Registry()
    try:
        server = make_server(registry, args.host, args.port, args.token)
    except OSError as error:
        raise UserError(
            f"--port {args.port}: cannot listen on {args.host}:{args.port} "
            f"({error.strerror or error}); choose another --port"
        ) from None
    host, port = server.server_address[:2]
    query = f"?token={args.token}" if args.token else ""
    print(f"tessera dashboard: http://{host}:{port}/{query} (registry {registry.path})", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
