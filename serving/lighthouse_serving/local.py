"""A local serving instance: a supervisor process that owns a private Ray head and the app.

``up`` starts ``python -m lighthouse_serving supervise`` in a session of its own; the supervisor
starts Ray (``ray.init`` with the config's resources and a temp dir of its own), deploys the
application and waits for SIGTERM, on which it shuts Serve and Ray down. Everything the instance
runs descends from the supervisor, so ``down`` can check that nothing is left: it finds the
processes of the supervisor's session, or naming its Ray temp dir, and ends them by pid.

The run directory (``.lighthouse/serving`` in the checkout by default) holds the state file
(``state.json``: pid, base URL, models, Ray temp dir), the supervisor's phase and its log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from lighthouse_serving.config import ServingConfig
from lighthouse_serving.probe import ProbeResult, port_is_free, probe

# AF_UNIX socket paths are limited to 107 bytes; Ray puts its sockets at
# TEMP/session_YYYY-MM-DD_HH-MM-SS_UUUUUU_PID/sockets/plasma_store (TEMP + ~64 bytes).
MAX_RAY_TEMP_DIR = 40

STATE_FILE = "state.json"
SECRET_FILE = "caller-secret"  # a local instance's callers' secret, when the config names none
PHASE_FILE = "phase"
LOG_FILE = "serving.log"
# The supervisor's phase once Serve reports the application running (every replica's engine
# started) and /v1/models answers. The ingress answers /v1/models from the config while the
# engine is still starting, so the probe alone says "up" half a minute early.
SERVING_PHASE = "serving at"


class InstanceError(Exception):
    """A local instance that cannot be started, reused or found; the message says why."""


@dataclass(frozen=True, slots=True)
class InstanceState:
    """What ``up`` records about a running instance."""

    pid: int
    base_url: str
    host: str
    port: int
    models: list[str]
    config: str
    ray_temp_dir: str
    log: str
    started_at: float
    secret_file: str = ""  # the callers' secrets (lighthouse_serving.credential)


def checkout_root() -> Path | None:
    """The checkout this package was imported from, if it was (``serving/lighthouse_serving``)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "serving" / "pyproject.toml").is_file() else None


def default_run_dir() -> Path:
    """``$LIGHTHOUSE_SERVING_RUN_DIR``, else ``.lighthouse/serving`` in the checkout (or cwd)."""
    configured = os.environ.get("LIGHTHOUSE_SERVING_RUN_DIR")
    if configured:
        return Path(configured).resolve()
    return (checkout_root() or Path.cwd()) / ".lighthouse" / "serving"


def ray_temp_dir(run_dir: Path) -> Path:
    """Ray's temp dir: ``RUN_DIR/ray`` when short enough for its sockets, else one under /tmp."""
    preferred = run_dir / "ray"
    if len(str(preferred)) <= MAX_RAY_TEMP_DIR:
        return preferred
    digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:10]
    return Path("/tmp") / f"lighthouse-ray-{digest}"


class LocalInstance:
    """The instance recorded in one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.state_path = run_dir / STATE_FILE
        self.phase_path = run_dir / PHASE_FILE
        self.log_path = run_dir / LOG_FILE

    # -- reading --------------------------------------------------------------------------

    def state(self) -> InstanceState | None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            return InstanceState(**data)
        except (OSError, ValueError, TypeError):
            return None

    def phase(self) -> str:
        try:
            return self.phase_path.read_text(encoding="utf-8").strip()
        except OSError:
            return "starting"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def running(self) -> InstanceState | None:
        """The recorded instance if its supervisor is alive."""
        state = self.state()
        if state is not None and _is_supervisor(state.pid):
            return state
        return None

    # -- starting -------------------------------------------------------------------------

    def start(
        self,
        config: ServingConfig,
        config_path: Path,
        *,
        secret_file: Path,
        timeout: float,
        report: Callable[[str], None],
    ) -> InstanceState:
        """Start the supervisor and wait until the application runs and ``/v1/models`` lists
        every model.

        Reuses an instance already up with the same address and models; refuses any other that
        is running. If start-up fails or times out, everything started is stopped again.
        """
        current = self.running()
        if current is not None:
            wanted = sorted(model.name for model in config.models)
            answer = probe(current.base_url, secret_file=secret_file)
            if (
                answer.answers
                and current.base_url == config.http.base_url
                and sorted(answer.models) == wanted
            ):
                report(f"already up (pid {current.pid}); reusing it")
                return current
            raise InstanceError(
                f"an instance is already running from {self.run_dir} (pid {current.pid}, "
                f"{current.base_url}, models {current.models}); stop it first with `down`"
            )
        self.clean_leftovers(report)
        if not port_is_free(config.http.host, config.http.port):
            raise InstanceError(
                f"{config.http.host}:{config.http.port} is in use by another program; "
                "choose another port (--port)"
            )

        self.run_dir.mkdir(parents=True, exist_ok=True)
        temp_dir = ray_temp_dir(self.run_dir)
        temp_dir.mkdir(parents=True, exist_ok=True)
        self.phase_path.write_text("starting the supervisor\n", encoding="utf-8")
        process = self._spawn(config_path, config, temp_dir, secret_file)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"==== supervisor pid {process.pid}, Ray temp dir {temp_dir}\n")
        state = InstanceState(
            pid=process.pid,
            base_url=config.http.base_url,
            host=config.http.host,
            port=config.http.port,
            models=[model.name for model in config.models],
            config=str(config_path),
            ray_temp_dir=str(temp_dir),
            log=str(self.log_path),
            started_at=time.time(),
            secret_file=str(secret_file),
        )
        self._write_state(state)
        try:
            self._wait_healthy(process, state, timeout=timeout, report=report)
        except BaseException:
            self.stop(report=lambda _line: None)
            raise
        return state

    def _spawn(
        self, config_path: Path, config: ServingConfig, temp_dir: Path, secret_file: Path
    ) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        # A driver given RAY_ADDRESS joins that cluster instead of starting its own.
        env.pop("RAY_ADDRESS", None)
        package_parent = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        command = [
            sys.executable,
            "-m",
            "lighthouse_serving",
            "supervise",
            "--config",
            str(config_path),
            "--port",
            str(config.http.port),
            "--host",
            config.http.host,
            "--run-dir",
            str(self.run_dir),
            "--ray-temp-dir",
            str(temp_dir),
            "--secret-file",
            str(secret_file),
        ]
        with self.log_path.open("ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} up\n".encode())
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own session: Ctrl-C of `up` is ours to handle
            )

    def _wait_healthy(
        self,
        process: subprocess.Popen[bytes],
        state: InstanceState,
        *,
        timeout: float,
        report: Callable[[str], None],
    ) -> None:
        started = time.monotonic()
        last_phase, last_report = "", 0.0
        wanted = set(state.models)
        while True:
            elapsed = time.monotonic() - started
            code = process.poll()
            if code is not None:
                raise InstanceError(
                    f"the serving supervisor exited ({code}) during start-up; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            phase = self.phase()
            if phase.startswith(SERVING_PHASE):
                answer: ProbeResult = probe(
                    state.base_url, secret_file=Path(state.secret_file), timeout=2.0
                )
                if answer.answers and wanted <= set(answer.models):
                    report(f"healthy after {elapsed:.0f} s: {', '.join(answer.models)}")
                    return
            if phase != last_phase or elapsed - last_report >= 15:
                report(f"{elapsed:4.0f} s  {phase}")
                last_phase, last_report = phase, elapsed
            if elapsed > timeout:
                raise InstanceError(
                    f"not healthy after {timeout:.0f} s (last phase: {phase}); "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            time.sleep(1.0)

    def _write_state(self, state: InstanceState) -> None:
        partial = self.state_path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
        partial.replace(self.state_path)

    # -- stopping -------------------------------------------------------------------------

    def stop(self, *, report: Callable[[str], None], grace: float = 90.0) -> bool:
        """Stop the recorded instance and anything it left; whether there was one running."""
        state = self.state()
        was_running = False
        if state is not None and _is_supervisor(state.pid):
            was_running = True
            report(f"stopping the serving supervisor (pid {state.pid})")
            _signal(state.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while _alive(state.pid) and time.monotonic() < deadline:
                time.sleep(0.5)
            if _alive(state.pid):
                report(f"the supervisor did not stop within {grace:.0f} s; killing it")
                _signal(state.pid, signal.SIGKILL)
        self.clean_leftovers(report)
        self.state_path.unlink(missing_ok=True)
        self.phase_path.unlink(missing_ok=True)
        return was_running

    def leftovers(self) -> list[int]:
        """Processes of the recorded instance still alive (its session, or naming its temp dir)."""
        state = self.state()
        if state is None:
            return []
        return sorted(instance_processes(state.pid, state.ray_temp_dir))

    def clean_leftovers(self, report: Callable[[str], None]) -> None:
        pids = self.leftovers()
        if not pids:
            return
        report(f"ending {len(pids)} leftover process(es) of the instance: {pids}")
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            for pid in pids:
                _signal(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                pids = [pid for pid in pids if _alive(pid)]
                if not pids:
                    return
                time.sleep(0.25)


def instance_processes(session_id: int, temp_dir: str) -> Iterator[int]:
    """Live processes in session ``session_id`` or whose command line names ``temp_dir``."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # Fields after the command name (which may hold spaces and parentheses).
        fields = stat[stat.rindex(")") + 2 :].split()
        state, session = fields[0], int(fields[3])
        if state == "Z":
            continue
        if session == session_id or (temp_dir and temp_dir in cmdline):
            yield pid


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _is_supervisor(pid: int) -> bool:
    """Whether ``pid`` is alive and still our supervisor (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return _alive(pid) and b"lighthouse_serving\0supervise" in cmdline


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
