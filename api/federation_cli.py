"""``lighthouse subgraph`` and ``lighthouse supergraph``: the city's graph scaled out, each domain
its own Apollo Federation v2 subgraph behind a federation router.

``subgraph NAME`` runs the gateway serving one domain alone (``LIGHTHOUSE_SUBGRAPH``): its own
authentication, policies, row-level security and audit, like the unified gateway. ``supergraph``
composes every subgraph's SDL into the supergraph SDL a router starts from; the subgraphs need
not be running (their SDL is built here, from the same code).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from api.serve_cli import serve

console = Console(stderr=True)


def subgraph(
    name: Annotated[
        str,
        typer.Argument(
            help="The domain: incidents, assets, bureaus, audit, models, licensing or documents."
        ),
    ],
    host: Annotated[str | None, typer.Option(help="Overrides LIGHTHOUSE_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides LIGHTHOUSE_PORT.")] = None,
    workers: Annotated[int | None, typer.Option(help="Overrides LIGHTHOUSE_WORKERS.")] = None,
) -> None:
    """Serve one domain alone as a federation subgraph (at /graphql)."""
    from api.graph.domains import DOMAINS

    if name not in DOMAINS:
        console.print(
            f"[red]No domain is called {escape(name)}; one of: {', '.join(DOMAINS)}[/red]"
        )
        raise typer.Exit(2)
    os.environ["LIGHTHOUSE_SUBGRAPH"] = name
    serve(host=host, port=port, workers=workers)


def supergraph(
    url: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=URL: where the router reaches a subgraph (repeat; default: every domain "
            "at http://127.0.0.1:4001/graphql, 4002… in the order `subgraph` lists them)."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write the supergraph SDL here (default: stdout).")
    ] = None,
    access_directives: Annotated[
        bool,
        typer.Option(
            help="Keep @authenticated, @requiresScopes and @policy for a router that enforces "
            "them (Hive Gateway, Apollo Router); Apollo Gateway needs them left out. The "
            "subgraphs enforce the same rules either way."
        ),
    ] = True,
) -> None:
    """Compose the subgraphs into the supergraph SDL a federation router runs
    (@theguild/federation-composition; needs `npm ci --prefix federation`)."""
    from api.command import command_settings
    from api.graph.supergraph import (
        CompositionFailed,
        ToolsMissing,
        compose,
        default_urls,
        subgraphs,
    )

    urls = default_urls()
    if url:
        urls = {}
        for pair in url:
            name, separator, address = pair.partition("=")
            if not separator or not address.startswith(("http://", "https://")):
                console.print(f"[red]--url takes NAME=http(s)://…, not {escape(pair)}[/red]")
                raise typer.Exit(2)
            urls[name] = address
    settings = command_settings()
    try:
        sdl = compose(subgraphs(settings, urls, access_directives=access_directives))
    except KeyError as unknown:
        console.print(f"[red]{escape(str(unknown.args[0]))}[/red]")
        raise typer.Exit(2) from None
    except ToolsMissing as missing:
        console.print(f"[red]{escape(str(missing))}[/red]")
        raise typer.Exit(2) from None
    except CompositionFailed as failed:
        console.print("[red]The subgraphs do not compose:[/red]")
        for error in failed.errors:
            console.print(f"  {escape(error)}")
        raise typer.Exit(1) from None
    if output is None:
        typer.echo(sdl, nl=False)
    else:
        output.write_text(sdl)
        console.print(f"Supergraph of {len(urls)} subgraphs written to {escape(str(output))}")
