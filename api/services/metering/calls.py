"""An admitted metered call, from its admission to its one ending.

Once a call is admitted its reservation is held in the ledger until the call ends: settled (what
it used is charged) or released (nothing is). ``MeteredCall.end`` does it once, whatever path
the call took (an answer, a refusal by the model, the tier gone, a failure of the gateway's own,
a client that left), and is shielded from the cancellation that a client's leaving brings, so no
path leaves a reservation to its lease (which would hold the licence's quota and concurrency for
``LIGHTHOUSE_METERING_LEASE_SECONDS``). Only a settlement the database cannot take is left to
the lease, and is then never charged.
"""

from __future__ import annotations

import anyio
import structlog

from api.auth.principal import Principal
from api.db.errors import UNREACHABLE
from api.domain.errors import DomainError
from api.domain.licensing import Cost
from api.services.metering.meter import Admission, Ending
from api.services.metering.settlements import SettlementDesk
from api.timing import Timings

log = structlog.get_logger(__name__)

# How long ending a call may take once its client has gone.
FINISH_SECONDS = 30
# A settlement that cannot be made leaves the reservation to its lease: never charged.
_NOT_SETTLED: tuple[type[BaseException], ...] = (DomainError, *UNREACHABLE)


class MeteredCall:
    """One admitted call of ``principal``, ended once (``end``)."""

    def __init__(
        self,
        settlements: SettlementDesk,
        principal: Principal,
        request_id: str,
        timings: Timings,
        admission: Admission,
        *,
        streamed: bool,
    ) -> None:
        self.admission = admission
        self.streamed = streamed
        self._settlements = settlements
        self._principal = principal
        self._request_id = request_id
        self._timings = timings
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    async def end(self, used: Cost | None, status: str) -> None:
        """Settle ``used`` (charged, at most what was reserved) or, if None, release the
        reservation; ``status`` says how the call ended (OK, FAILED, CANCELLED). Only the first
        ending counts: every later one does nothing. The token is not checked again: the call
        was admitted, and what it used is charged even if the token expired or was revoked
        while the model worked."""
        if self._ended:
            return
        self._ended = True
        if used is None and status == "OK":
            # Recorded OK means charged (a statement counts those): a call that ended with
            # nothing to charge (a stream without a token or a usage report) failed.
            status = "FAILED"
        ending = Ending(self.admission, used, status, self.streamed)
        with anyio.CancelScope(shield=True), anyio.move_on_after(FINISH_SECONDS):
            try:
                await self._settlements.finish(
                    self._principal, self._request_id, self._timings, ending
                )
            except _NOT_SETTLED as error:
                log.warning(
                    "metering.finish_failed",
                    request=str(self.admission.request_id),
                    status=status,
                    error=str(error),
                )


def reported_use(report: object, admission: Admission, *, quiet: bool = False) -> Cost | None:
    """The tier's usage report (``prompt_tokens``, ``completion_tokens``) as a cost, its images
    those the request sent; None if it is not a usage report. A prompt larger than was
    reserved is logged (``quiet``: not, for the running usage of every chunk)."""
    if not isinstance(report, dict):
        return None
    prompt, completion = report.get("prompt_tokens"), report.get("completion_tokens")
    if type(prompt) is not int or type(completion) is not int or min(prompt, completion) < 0:
        return None
    if prompt > admission.reserved.input_tokens and not quiet:
        log.warning(
            "metering.input_over_reservation",
            request=str(admission.request_id),
            reported=prompt,
            reserved=admission.reserved.input_tokens,
        )
    return Cost(prompt, completion, admission.reserved.images)
