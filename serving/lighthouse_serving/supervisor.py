"""Deploying the application on Ray: into a cluster that runs already (``deploy``, the GPU
cluster), or into a private Ray head this process starts and owns (``supervise``, behind ``up``).

Ray is imported inside the functions: the CLI's other commands (and the gateway's tooling that
validates configs) work without paying for, or even having, Ray.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from lighthouse_serving.app import build_app
from lighthouse_serving.config import ServingConfig
from lighthouse_serving.isolation import IsolationError, Relay, enter_private_network, listen
from lighthouse_serving.local import SERVING_PHASE
from lighthouse_serving.probe import probe

log = logging.getLogger("lighthouse_serving")


class PhaseFile:
    """Where the supervisor tells ``up`` what it is doing (one line, replaced)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __call__(self, phase: str) -> None:
        log.info("phase: %s", phase)
        if self.path is not None:
            partial = self.path.with_suffix(".partial")
            partial.write_text(phase + "\n", encoding="utf-8")
            partial.replace(self.path)


def deploy(
    config: ServingConfig, *, secret_file: Path, phase: PhaseFile, wait: bool = True
) -> None:
    """Run the app on the Ray cluster this driver is connected to, behind Serve's HTTP proxy.

    With ``wait`` (the default) this returns once the app's deployments are running; Serve's
    controller keeps the app after this driver exits.
    """
    from ray import serve

    phase(f"starting Serve's HTTP proxy on {config.http.host}:{config.http.port}")
    serve.start(http_options={"host": config.http.host, "port": config.http.port})
    phase("building the application")
    app = build_app(config, secret_file)
    phase(
        "deploying "
        + ", ".join(model.name for model in config.models)
        + " (engine start-up: 1-2 minutes on CPU)"
    )
    # serve.run always waits for the app to run; run_many can submit it and return (the GPU
    # cluster's head deploys before its workers have joined).
    serve.run_many(
        [serve.RunTarget(target=app, name=config.app_name, route_prefix="/")],
        wait_for_ingress_deployment_creation=wait,
        wait_for_applications_running=wait,
    )
    phase("deployed; waiting for /v1/models" if wait else "submitted")


def supervise(
    config: ServingConfig,
    *,
    ray_temp_dir: Path,
    phase_path: Path | None,
    secret_file: Path,
) -> int:
    """Start a private Ray head, deploy the app, and serve until SIGTERM or SIGINT.

    Returns the process's exit code. Ray and Serve are shut down on every way out, so the
    instance leaves no process behind.
    """
    phase = PhaseFile(phase_path)
    relay: Relay | None = None
    if config.ray.private_network:
        # Before anything starts a thread (the kernel moves single-threaded processes only):
        # the API's socket in the machine's network, then this process into a private one.
        try:
            api_socket = listen(config.http.host, config.http.port)
            enter_private_network()
        except (OSError, IsolationError) as error:
            log.error("cannot start: %s", error)
            phase(f"failed: {error}")
            return 1
        phase(f"in a private network; only {config.http.host}:{config.http.port} is reachable")
        relay = Relay(api_socket, config.http.port)
        relay.start()
        # Serve's proxy listens on the namespace's loopback, on the same port number.
        config = config.model_copy(
            update={"http": config.http.model_copy(update={"host": "127.0.0.1"})}
        )
    # Imported only now: importing Ray may start threads.
    import ray
    from ray import serve

    stop = threading.Event()
    code = 0
    try:
        phase(
            f"starting Ray ({config.ray.num_cpus} logical CPUs, object store "
            f"{config.ray.object_store_memory.human_readable()})"
        )
        ray.init(
            num_cpus=config.ray.num_cpus,
            object_store_memory=int(config.ray.object_store_memory),
            include_dashboard=False,
            namespace="lighthouse",
            log_to_driver=True,
            _memory=int(config.ray.memory),
            _temp_dir=str(ray_temp_dir),
            _node_ip_address="127.0.0.1",
        )

        # ray.init installs its own SIGTERM handler; ours replaces it to shut down in order.
        def _request_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("received signal %d; stopping", signum)
            stop.set()

        signal.signal(signal.SIGTERM, _request_stop)
        signal.signal(signal.SIGINT, _request_stop)

        deploy(config, secret_file=secret_file, phase=phase)
        deadline = time.monotonic() + 120
        while (
            not stop.is_set()
            and not probe(config.http.base_url, secret_file=secret_file, timeout=2.0).answers
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the app is running but /v1/models does not answer")
            stop.wait(1.0)
        if not stop.is_set():
            phase(f"{SERVING_PHASE} {config.http.base_url}")
        while not stop.wait(3600):
            pass
    except Exception:
        log.exception("the serving supervisor failed")
        phase("failed (see the log)")
        code = 1
    finally:
        phase("stopping")
        try:
            if ray.is_initialized():
                serve.shutdown()
        except Exception:
            log.exception("serve.shutdown failed")
        ray.shutdown()
        if relay is not None:
            relay.stop()
        phase("stopped")
    return code
