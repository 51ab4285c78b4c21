"""Evaluation runs asked for through the graph, done by the vision workers.

An officer's request opens the run (or finds the one to resume) and queues one job for it, in the
request's transaction: the job and the run commit together or not at all, and while a run's job
waits or runs, asking again queues nothing more (the job's key is the run). A vision worker takes
the job and answers the set's frames as the officer who asked (the subject recorded with the
run, the officer's bureau, a model officer's scopes; Cedar and row-level security still decide),
recording answers as they come. If the serving tier goes away, the job waits and is taken up
again, resuming where it stopped; the run's ``answered`` shows how far it got.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import orjson

from api.access.scope import AccessScope
from api.auth.principal import Principal, PrincipalKind
from api.domain.errors import InvalidInput
from api.repositories.evaluation import EvaluationRepository, RunRecord
from api.repositories.vision import VisionRepository
from api.services.vision.evaluation import open_run
from api.services.vision.registry import checked_model

EVALUATE = "evaluate_model"
# The scopes a run's officer acts with in the worker (as at the command line).
OFFICER_SCOPES = frozenset({"incidents:read", "models:admin"})


@dataclass(frozen=True, slots=True)
class EvaluationJob:
    """What a queued evaluation names: the run, and what the runner needs to open it again."""

    run_id: int
    set_name: str
    set_version: int
    model: str
    model_version: str
    subject: str
    bureau_id: int
    bureau_code: str

    def payload(self) -> bytes:
        return orjson.dumps(
            {
                "run": self.run_id,
                "set": self.set_name,
                "set_version": self.set_version,
                "model": self.model,
                "model_version": self.model_version,
                "subject": self.subject,
                "bureau": self.bureau_id,
                "bureau_code": self.bureau_code,
            }
        )

    @classmethod
    def read(cls, payload: bytes | None) -> EvaluationJob:
        """The job from its payload; ValueError if it is not one."""
        try:
            data = orjson.loads(payload or b"{}")
            return cls(
                int(data["run"]),
                str(data["set"]),
                int(data["set_version"]),
                str(data["model"]),
                str(data["model_version"]),
                str(data["subject"]),
                int(data["bureau"]),
                str(data["bureau_code"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"not an evaluation job: {error}") from error

    def principal(self) -> Principal:
        """The officer who asked for the run, as the worker acts for them."""
        return Principal(
            subject=self.subject,
            kind=PrincipalKind.STAFF,
            bureau_id=self.bureau_id,
            bureau_code=self.bureau_code,
            scopes=OFFICER_SCOPES,
        )


@dataclass(frozen=True, slots=True)
class EvaluationRequested:
    run: RunRecord
    frames: int
    queued: bool  # False: its job was already waiting or running, or every frame is answered


async def request_evaluation(
    access: AccessScope,
    model: str,
    model_version: str,
    set_name: str,
    set_version: int | None,
    served: Collection[str] | None,
) -> EvaluationRequested:
    """Open the run of ``model`` ``model_version`` over the caller's bureau's set and queue it
    for the vision workers. The serving tier must serve the model (``served``: what it serves
    now, None if it could not be asked)."""
    model, model_version = checked_model(model, model_version, served)
    principal = access.principal
    if principal.bureau_id is None or principal.bureau_code is None:
        raise InvalidInput(
            "set", "evaluation sets are a bureau's: only a bureau's officer runs one"
        )
    opened = await open_run(access, set_name, set_version, model, model_version)
    frames = opened.set.frames
    (counted,) = await EvaluationRepository(access.uow).runs(run_id=opened.run.id, limit=1)
    left = frames - counted.answered
    queued = False
    if left > 0:
        job = EvaluationJob(
            opened.run.id,
            opened.set.name,
            opened.set.version,
            model,
            model_version,
            principal.subject,
            principal.bureau_id,
            principal.bureau_code,
        )
        queued = await VisionRepository(access.uow).enqueue(
            EVALUATE, job.payload(), f"evaluation-run:{opened.run.id}"
        )
    access.audit.outcome = "QUEUED" if queued else ("ANSWERED" if left == 0 else "WAITING")
    return EvaluationRequested(opened.run, frames, queued)
