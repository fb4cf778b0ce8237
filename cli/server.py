"""`storeflow server start|stop|status`: the whole local stack in one command (a Prefect
server on 127.0.0.1, Block types and the config document, the work pool, every
deployment, workers); services/stack.py does the work."""

import json

import typer
from rich.table import Table

from storeflow.cli.common import JsonOption, err, fail, out

server_app = typer.Typer(
    help="The local stack: Prefect server, blocks, work pool, deployments, workers.",
    no_args_is_help=True,
)


@server_app.command("start")
def start_cmd(
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Prefect server port (default: a free one)."
    ),
    workers: int = typer.Option(1, "--workers", min=0, max=64, help="Process workers to run."),
    database_url: str | None = typer.Option(
        None, "--database-url", help="storeflow's database (default: SQLite in STOREFLOW_HOME)."
    ),
    prefect_database_url: str | None = typer.Option(
        None,
        "--prefect-database-url",
        help="Prefect's database, e.g. postgresql+asyncpg://... (default: SQLite).",
    ),
    no_deploy: bool = typer.Option(False, "--no-deploy", help="Skip `prefect deploy --all`."),
    worker_limit: int | None = typer.Option(
        None,
        "--worker-limit",
        min=1,
        max=1000,
        help="Runs each worker takes at once (default: no limit; one worker may take all).",
    ),
) -> None:
    """Bring up every part that is not up yet (idempotent); print PREFECT_API_URL."""
    from storeflow.services import stack

    try:
        record = stack.start(
            port=port,
            workers=workers,
            database_url=database_url,
            prefect_database_url=prefect_database_url,
            deploy_flows=not no_deploy,
            worker_limit=worker_limit,
            progress=lambda line: err().print(line, highlight=False),
        )
    except stack.StackError as exc:
        fail(str(exc), code=1)
    out().print(f"export PREFECT_API_URL={record.api_url}", highlight=False)
    out().print(f"UI: {record.api_url.removesuffix('/api')}", highlight=False)


@server_app.command("stop")
def stop_cmd() -> None:
    """Stop the workers and the server this stack started (by their PIDs)."""
    from storeflow.services import stack

    stopped = stack.stop()
    out().print("stopped: " + (", ".join(stopped) or "nothing was running"))


@server_app.command("status")
def status_cmd(as_json: bool = JsonOption) -> None:
    """Each part of the stack: up or not, and what it is. Exit 1 if the server is down."""
    from storeflow.services import stack

    parts = stack.status()
    if as_json:
        print(json.dumps(parts))
    else:
        table = Table("part", "up", "detail")
        for name, part in parts.items():
            table.add_row(name, "yes" if part["up"] else "no", str(part["detail"]))
        out().print(table)
    if not parts["server"]["up"]:
        raise typer.Exit(1)
