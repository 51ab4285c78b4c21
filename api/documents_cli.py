"""``lighthouse documents …``: the city's developers register the GraphQL documents their
frontends send by id (trusted documents), and list them.

A manifest is the JSON object Relay's compiler (``persistOutput``) and GraphQL Code Generator's
client preset (``persisted-documents.json``) write, each document's id and its text, or Apollo's
``persisted-query-manifest.json`` (``generate-persisted-query-manifest``). Every
document is checked before anything is registered (syntax, names, validity against this
gateway's schema, the depth and alias limits); one bad document registers none. ``plan`` says
how the gateway answers a document: by its one compiled SQL statement, or on the resolvers and
why. The commands act as a developer (``cli:<user>``, the ``developer`` role): the policies and row-level
security apply, and the registration is audited in its transaction.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console

from api.auth.principal import Principal, PrincipalKind
from api.command import command_settings, run_as
from api.listing import AsJson, emit

if TYPE_CHECKING:
    from api.access.scope import AccessScope
    from api.graph.core.trusted import Registration
    from api.repositories.documents import TrustedDocument

# The graph is imported by the commands that need it, when they run (see api/command.py).

console = Console(stderr=True)
documents_app = typer.Typer(
    help="Trusted GraphQL documents, sent by id (as a developer).", no_args_is_help=True
)
MAX_MANIFEST_BYTES = 32 * 1024 * 1024


def developer() -> Principal:
    return Principal(
        subject=f"cli:{getpass.getuser()}",
        kind=PrincipalKind.STAFF,
        roles=frozenset({"developer"}),
    )


def read_manifest(path: Path) -> dict[str, str]:
    """The manifest's documents by id; exits 2 naming what is wrong with it."""
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"larger than {MAX_MANIFEST_BYTES} bytes")
        manifest = orjson.loads(path.read_bytes())
    except (OSError, ValueError) as error:  # orjson's decode error is a ValueError
        console.print(f"{path}: cannot be read as a manifest: {error}", style="red", markup=False)
        raise typer.Exit(2) from None
    from api.graph.core.trusted import MAX_MANIFEST, manifest_documents

    try:
        documents = manifest_documents(manifest)
    except ValueError as error:
        console.print(f"{path}: {error}", style="red", markup=False)
        raise typer.Exit(2) from None
    if not documents or len(documents) > MAX_MANIFEST:
        console.print(
            f"{path}: 1 to {MAX_MANIFEST} documents per manifest", style="red", markup=False
        )
        raise typer.Exit(2)
    return documents


@documents_app.command("register")
def register_documents(
    manifest: Annotated[Path, typer.Argument(help="The persisted-document manifest (JSON).")],
    client: Annotated[
        str, typer.Option(help="The frontend the documents belong to (e.g. pwb-board).")
    ],
) -> None:
    """Register a manifest's documents; those registered before with the same text stay."""
    from api.graph.core.schema import build_schema
    from api.graph.core.trusted import check_all, register_manifest
    from api.graph.domains import DOMAINS
    from api.policy import resources

    settings = command_settings()
    documents = read_manifest(manifest)
    schema = build_schema(settings, tuple(DOMAINS.values()))
    principal = developer()
    # Checked before anything is opened, so that every problem is named at once.
    _, problems = check_all(schema, settings.graph, client, principal.subject, documents)
    if problems:
        for problem in problems:
            console.print(f"{problem.field}: {problem.message}", style="red", markup=False)
        console.print(
            f"{len(problems)} document(s) refused; nothing was registered",
            style="red",
            markup=False,
        )
        raise typer.Exit(2)

    async def step(access: AccessScope) -> Registration:
        return await register_manifest(access, schema, settings.graph, client, documents)

    done = run_as(
        settings, principal, "documents register", ("RegisterDocument", resources.DOCUMENTS), step
    )
    console.print(
        f"{len(done.registered)} document(s) registered, {len(done.unchanged)} already were "
        f"(client {client})"
    )


@documents_app.command("list")
def list_documents(
    client: Annotated[str | None, typer.Option(help="Only this frontend's documents.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 200,
    as_json: AsJson = False,
) -> None:
    """The registered documents, newest first."""
    from api.policy import resources
    from api.repositories.documents import TrustedDocuments

    settings = command_settings()

    async def step(access: AccessScope) -> list[TrustedDocument]:
        return await TrustedDocuments(access.uow).of_client(client, limit)

    found = run_as(
        settings, developer(), "documents list", ("RegisterDocument", resources.DOCUMENTS), step
    )
    emit(
        ("id", "client", "operations", "registered_by", "registered_at"),
        (
            {
                "id": document.id,
                "client": document.client,
                "operations": list(document.operation_names),
                "registered_by": document.registered_by,
                "registered_at": document.registered_at,
            }
            for document in found
        ),
        as_json,
    )


@documents_app.command("plan")
def plan_document(
    document_id: Annotated[str, typer.Argument(help="The registered document's id.")],
    operation: Annotated[
        str | None, typer.Option(help="The operation, when the document has several.")
    ] = None,
) -> None:
    """How the gateway answers a registered document: by its one compiled SQL statement (printed
    with its parameters), or on the resolvers, and why."""
    from api.graph.core.compiled import NeedsValues, NotCompiled, Planner
    from api.graph.core.schema import build_schema
    from api.graph.domains import DOMAINS
    from api.policy import resources
    from api.repositories.documents import TrustedDocuments

    settings = command_settings()

    async def step(access: AccessScope) -> TrustedDocument | None:
        return (await TrustedDocuments(access.uow).by_ids([document_id])).get(document_id)

    found = run_as(
        settings, developer(), "documents plan", ("RegisterDocument", resources.DOCUMENTS), step
    )
    if found is None:
        console.print(f"no document is registered as {document_id}", style="red", markup=False)
        raise typer.Exit(1)
    names = found.operation_names if operation is None else [operation]
    schema = build_schema(settings, tuple(DOMAINS.values()))
    planner = Planner(schema, settings.graph)
    for name in names:
        plan = planner.plan(found.document, name)
        if isinstance(plan, NeedsValues):
            print(f"{name}\tcompiled\tper value: {plan.reason}")
            continue
        if isinstance(plan, NotCompiled):
            print(f"{name}\tresolvers\t{plan.reason}")
            continue
        print(f"{name}\tcompiled\tone statement, parameters {list(plan.params)!r}")
        print(plan.sql)
