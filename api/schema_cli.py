"""``lighthouse schema print``: the graph's SDL without introspection rights — the unified graph
as its clients see it (what GraphQL Code Generator, Relay's compiler and IDEs read), or one
subgraph's federation SDL as a router reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)
schema_app = typer.Typer(help="The graph's schema (SDL).", no_args_is_help=True)


@schema_app.command("print")
def print_sdl(
    subgraph: Annotated[
        str | None,
        typer.Option(help="One domain's federation subgraph SDL (for a router) instead."),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write it here (default: stdout).")] = None,
) -> None:
    """Print the schema: the unified graph for clients (as schema.graphql in the repository),
    or a subgraph's SDL with its federation directives."""
    from api.command import command_settings
    from api.graph.domains import DOMAINS

    settings = command_settings()
    if subgraph is None:
        from api.graph.sdl import client_sdl

        text = client_sdl(settings)
    elif subgraph not in DOMAINS:
        console.print(
            f"[red]No domain is called {escape(subgraph)}; one of: {', '.join(DOMAINS)}[/red]"
        )
        raise typer.Exit(2)
    else:
        from api.graph.supergraph import subgraph_sdl

        text = subgraph_sdl(settings, subgraph) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}", markup=False)
