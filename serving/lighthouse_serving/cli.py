"""``python -m lighthouse_serving``: start, stop and inspect the serving tier.

Progress goes to stderr; what a caller wants to read (the base URL of ``up``, the status) is the
last line on stdout::

    URL=$(python -m lighthouse_serving up --config serving/configs/cpu-tiny.yaml)
    python -m lighthouse_serving status
    python -m lighthouse_serving down
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from lighthouse_serving.config import MAX_TINY_VARIANT, ConfigError, ServingConfig
from lighthouse_serving.credential import (
    SecretFileError,
    add_secret,
    read_secrets,
    retire_secrets,
    write_new_secret,
)
from lighthouse_serving.local import SECRET_FILE, InstanceError, LocalInstance, default_run_dir
from lighthouse_serving.probe import probe
from lighthouse_serving.tiny_model import is_tiny_model, write_tiny_model

app = typer.Typer(
    name="lighthouse_serving",
    help="Lighthouse's serving tier: Ray Serve LLM applications around vLLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="a serving config (YAML)", exists=False)
]
PortOption = Annotated[
    int | None, typer.Option("--port", help="HTTP port (overrides the config's http.port)")
]
RunDirOption = Annotated[
    Path | None,
    typer.Option(
        "--run-dir",
        help="where the local instance's state, log and Ray temp dir live "
        "(default: $LIGHTHOUSE_SERVING_RUN_DIR or .lighthouse/serving in the checkout)",
    ),
]

SecretFileOption = Annotated[
    Path | None,
    typer.Option(
        "--secret-file",
        help="the callers' secrets, one per line (overrides the config's callers.secret_file)",
    ),
]


def _say(line: str) -> None:
    typer.echo(f"lighthouse-serving: {line}", err=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"lighthouse-serving: error: {message}", err=True)
    return typer.Exit(code)


def _load(
    path: Path, *, port: int | None, host: str | None = None, check_paths: bool = True
) -> ServingConfig:
    """Load a config with its paths checked, writing tiny models that are missing first."""
    try:
        unchecked = ServingConfig.load(path, check_paths=False)
        for model in unchecked.models:
            if model.tiny_model and not is_tiny_model(model.model_dir, model.tiny_variant):
                _say(f"writing the tiny model for {model.name} into {model.model_dir}")
                write_tiny_model(model.model_dir, model.tiny_variant)
        config = ServingConfig.load(path, check_paths=check_paths)
    except ConfigError as error:
        raise _fail(str(error), 2) from error
    http = config.http.model_copy(
        update={k: v for k, v in (("port", port), ("host", host)) if v is not None}
    )
    return config.model_copy(update={"http": http})


def _usable_secret_file(path: Path) -> Path:
    try:
        read_secrets(path)
    except SecretFileError as error:
        raise _fail(str(error), 2) from error
    return path.resolve()


@app.command()
def up(
    config: ConfigOption,
    port: PortOption = None,
    run_dir: RunDirOption = None,
    secret_file: SecretFileOption = None,
    timeout: Annotated[
        float, typer.Option(help="seconds to wait for /v1/models to answer")
    ] = 600.0,
) -> None:
    """Start a local Ray head and the app; print the base URL once /v1/models answers.

    The app answers only callers holding a secret from the callers' secret file (--secret-file,
    else the config's callers.secret_file, else RUN_DIR/caller-secret, made when missing)."""
    serving = _load(config, port=port)
    instance = LocalInstance(run_dir or default_run_dir())
    secrets_path = secret_file or serving.callers.secret_file or instance.run_dir / SECRET_FILE
    if not secrets_path.exists():
        write_new_secret(secrets_path)
        _say(f"made a callers' secret in {secrets_path} (the gateway reads it from there)")
    secrets_path = _usable_secret_file(secrets_path)
    _say(
        f"starting {', '.join(m.name for m in serving.models)} at {serving.http.base_url} "
        f"(Ray: {serving.ray.num_cpus} logical CPUs; log: {instance.log_path})"
    )
    started = time.monotonic()
    try:
        state = instance.start(
            serving, config.resolve(), secret_file=secrets_path, timeout=timeout, report=_say
        )
    except InstanceError as error:
        raise _fail(str(error)) from error
    except KeyboardInterrupt as interrupted:
        raise _fail("interrupted; everything started was stopped", 130) from interrupted
    _say(f"up in {time.monotonic() - started:.0f} s; stop it with `down`")
    typer.echo(state.base_url)


@app.command()
def down(run_dir: RunDirOption = None) -> None:
    """Stop the local app and its Ray head; make sure none of their processes is left."""
    instance = LocalInstance(run_dir or default_run_dir())
    if instance.stop(report=_say):
        _say("stopped")
    else:
        _say("nothing was running")
    left = instance.leftovers()
    if left:
        raise _fail(f"processes still alive: {left}")


@app.command()
def status(
    run_dir: RunDirOption = None,
    url: Annotated[
        str | None, typer.Option(help="ask this base URL instead (e.g. the GPU cluster)")
    ] = None,
    secret_file: SecretFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
) -> None:
    """Whether the serving tier answers, and which models it serves (exit 1 when it does not)."""
    pid = None
    if url is None:
        state = LocalInstance(run_dir or default_run_dir()).running()
        if state is None:
            if as_json:
                typer.echo(json.dumps({"running": False, "answers": False}))
            else:
                typer.echo("not running")
            raise typer.Exit(1)
        url, pid = state.base_url, state.pid
        secret_file = secret_file or (Path(state.secret_file) if state.secret_file else None)
    answer = probe(url, secret_file=secret_file)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "running": pid is not None or answer.answers,
                    "pid": pid,
                    "base_url": url,
                    "answers": answer.answers,
                    "models": list(answer.models),
                    "error": answer.error,
                }
            )
        )
    elif answer.answers:
        typer.echo(f"up at {url}: {', '.join(answer.models)}")
    else:
        typer.echo(f"not answering at {url}: {answer.error}")
    if not answer.answers:
        raise typer.Exit(1)


@app.command()
def deploy(
    config: ConfigOption,
    port: PortOption = None,
    address: Annotated[
        str, typer.Option(help="the Ray cluster to join (`auto`: the one on this node)")
    ] = "auto",
    wait: Annotated[
        bool, typer.Option(help="wait until the app runs and /v1/models answers")
    ] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait for /v1/models")] = 1800.0,
    secret_file: SecretFileOption = None,
) -> None:
    """Deploy the app into a running Ray cluster (the GPU cluster's head); it stays after exit.

    The callers' secret file (callers.secret_file) must be at the same path on every node that
    may run the ingress; the app refuses every request where it cannot read it."""
    import ray

    from lighthouse_serving.supervisor import PhaseFile
    from lighthouse_serving.supervisor import deploy as deploy_app

    # The weights live on the GPU nodes that run the replicas, not necessarily on the head that
    # deploys: the directories are checked where they are loaded.
    serving = _load(config, port=port, check_paths=False)
    secrets_path = secret_file or serving.callers.secret_file
    if secrets_path is None:
        raise _fail(
            "the tier answers its own callers only: set callers.secret_file in the config (or "
            "--secret-file); `python -m lighthouse_serving secret new PATH` makes one",
            2,
        )
    secrets_path = _usable_secret_file(secrets_path)
    _logging()
    ray.init(address=address, namespace="lighthouse")
    deploy_app(serving, secret_file=secrets_path, phase=PhaseFile(None), wait=wait)
    if wait:
        deadline = time.monotonic() + timeout
        while not probe(serving.http.base_url, secret_file=secrets_path).answers:
            if time.monotonic() > deadline:
                raise _fail(f"/v1/models did not answer within {timeout:.0f} s")
            time.sleep(2)
    _say(f"deployed {serving.app_name}")
    typer.echo(serving.http.base_url)


@app.command("supervise", hidden=True)
def supervise_command(
    config: ConfigOption,
    port: Annotated[int, typer.Option()],
    host: Annotated[str, typer.Option()],
    run_dir: Annotated[Path, typer.Option()],
    ray_temp_dir: Annotated[Path, typer.Option()],
    secret_file: Annotated[Path, typer.Option()],
) -> None:
    """The process behind `up` (not for direct use)."""
    from lighthouse_serving.local import PHASE_FILE
    from lighthouse_serving.supervisor import supervise

    _logging()
    # `up` wrote any tiny model already; checking one again would start the tokenizer's
    # threads, and the supervisor must stay single-threaded until it has left the network.
    try:
        loaded = ServingConfig.load(config)
    except ConfigError as error:
        raise _fail(str(error), 2) from error
    http = loaded.http.model_copy(update={"port": port, "host": host})
    serving = loaded.model_copy(update={"http": http})
    code = supervise(
        serving,
        ray_temp_dir=ray_temp_dir,
        phase_path=run_dir / PHASE_FILE,
        secret_file=secret_file,
    )
    raise typer.Exit(code)


secret_app = typer.Typer(
    help="The callers' secret file: make one, and rotate its secret without a restart.",
    no_args_is_help=True,
)
app.add_typer(secret_app, name="secret")
SecretPath = Annotated[Path, typer.Argument(help="the callers' secret file")]


@secret_app.command("new")
def secret_new(path: SecretPath) -> None:
    """Make a secret file with one fresh secret (mode 0600); an existing file is refused."""
    if path.exists():
        raise _fail(f"{path} exists; rotate its secret with `secret add` and `secret retire`", 2)
    write_new_secret(path)
    _say(f"wrote a new secret to {path}; give it to the tier's callers only")


@secret_app.command("add")
def secret_add(path: SecretPath) -> None:
    """Rotation, step 1: put a fresh secret first in the file; the old ones are still accepted
    until `retire`. Callers use the first line of their copy."""
    try:
        count = add_secret(path)
    except SecretFileError as error:
        raise _fail(str(error), 2) from error
    _say(f"{path}: a new secret first, {count - 1} older one(s) still accepted")


@secret_app.command("retire")
def secret_retire(path: SecretPath) -> None:
    """Rotation, last step: keep only the newest secret (the first line); the others are
    refused from the next request on."""
    try:
        retired = retire_secrets(path)
    except SecretFileError as error:
        raise _fail(str(error), 2) from error
    _say(f"{path}: {retired} older secret(s) retired")


@app.command("tiny-model")
def tiny_model(
    directory: Annotated[Path, typer.Argument(help="where to write the model's files")],
    variant: Annotated[
        int,
        typer.Option(min=0, max=MAX_TINY_VARIANT, help="another variant answers differently"),
    ] = 0,
) -> None:
    """Write the tiny LLaVA-shaped test model (no weights: serve it with load_format dummy)."""
    path = write_tiny_model(directory, variant)
    typer.echo(str(path.resolve()))


@app.command("check-config")
def check_config(
    config: Annotated[Path, typer.Argument(help="a serving config (YAML)")],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="validate without checking that model directories exist"),
    ] = False,
    engine: Annotated[
        bool,
        typer.Option(
            "--engine",
            help="also let Ray Serve LLM build the engine configs (checks engine_extras' "
            "argument names; needs the serving environment, about 20 s)",
        ),
    ] = False,
) -> None:
    """Validate a config; every problem is reported with the field it concerns (exit 2)."""
    try:
        serving = ServingConfig.load(config, check_paths=not dry_run)
    except ConfigError as error:
        raise _fail(str(error), 2) from error
    if engine:
        from lighthouse_serving.app import check_engine_arguments

        problems = check_engine_arguments(serving)
        if problems:
            raise _fail(f"{config}: the engine refuses:\n  " + "\n  ".join(problems), 2)
    names = ", ".join(f"{m.name} ({m.accelerator.kind})" for m in serving.models)
    typer.echo(f"{config}: valid: {names} at {serving.http.base_url}")


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
