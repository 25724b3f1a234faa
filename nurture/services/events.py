"""Provider-event upkeep shared by the app, the CLI and the flows: retry what the webhook could
not apply, and stop scheduled sends to addresses that were suppressed before they went out.

SendGrid holds a message with `send_at` (up to 72 h ahead) under the batch id our transport
created for it; cancelling that batch (`POST /v3/user/scheduled_sends`, status `cancel`) is
the only way to stop it. A cancellation that fails is simply tried again by the next call:
the touches to cancel are derived from the ledger (sent, `send_at` still ahead, a batch id,
address suppressed), so nothing has to remember a failed attempt.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from nurture.store.events import CancelFailed, EventStore

if TYPE_CHECKING:
    from nurture.settings import Settings
    from nurture.wiring import App


def _error(r: httpx.Response) -> str:
    from nurture.adapters.delivery.sendgrid import error_text

    return error_text(r)


class ScheduledSendCanceller:
    """`canceller(batch_id)` cancels one scheduled batch at SendGrid or raises CancelFailed.
    Idempotent: a batch that already carries a cancellation counts as cancelled."""

    def __init__(self, api_key: str, host: str = "https://api.sendgrid.com",
                 timeout_seconds: float = 10.0) -> None:
        self._client = httpx.Client(base_url=host.rstrip("/"), timeout=timeout_seconds,
                                    headers={"Authorization": f"Bearer {api_key}",
                                             "User-Agent": "nurture (+https://github.com/nurture)"})

    def __call__(self, batch_id: str) -> None:
        try:
            r = self._client.post("/v3/user/scheduled_sends",
                                  json={"batch_id": batch_id, "status": "cancel"})
            if r.status_code in (200, 201):
                return
            if r.status_code == 400:  # already has a status (a retry after a lost answer?)
                current = self._client.get(f"/v3/user/scheduled_sends/{batch_id}")
                states = ({s.get("status") for s in current.json() if isinstance(s, dict)}
                          if current.status_code == 200 and isinstance(current.json(), list)
                          else set())
                if "cancel" in states:
                    return
                if "pause" in states:
                    p = self._client.patch(f"/v3/user/scheduled_sends/{batch_id}",
                                           json={"status": "cancel"})
                    if p.status_code in (200, 204):
                        return
                    r = p
        except (httpx.HTTPError, ValueError) as exc:
            raise CancelFailed(f"could not reach SendGrid to cancel batch {batch_id} "
                               f"({type(exc).__name__}: {exc}); retried by the next run"
                               ) from None
        raise CancelFailed(f"SendGrid did not cancel batch {batch_id}: {_error(r)}")

    def close(self) -> None:
        self._client.close()


def make_canceller(settings: Settings) -> ScheduledSendCanceller | None:
    """A canceller when SendGrid is configured (scheduled sends exist only there)."""
    if settings.transport != "sendgrid" and not settings.sendgrid_api_key:
        return None
    from nurture.wiring import MissingSecret, sendgrid_api_key

    try:
        key = sendgrid_api_key(settings)
    except MissingSecret:
        return None
    return ScheduledSendCanceller(key, settings.sendgrid_host,
                                  min(settings.sendgrid_timeout_seconds, 10.0))


def cancel_scheduled_sends(app: App, emails: list[str] | None = None,
                           now: datetime | None = None) -> dict[str, Any]:
    """Cancel scheduled sends to suppressed addresses (all, or only `emails`)."""
    events = EventStore(app.engine)
    if not events.scheduled_to_cancel(now, emails):
        return {"cancelled": 0, "errors": []}
    canceller = make_canceller(app.settings)
    if canceller is None:
        return {"cancelled": 0, "errors": ["scheduled sends to suppressed addresses wait "
                                           "for cancellation, but no SendGrid key is set"]}
    try:
        done, errors = events.cancel_scheduled(canceller, emails, now)
    finally:
        canceller.close()
    return {"cancelled": done, "errors": errors}


def retry_provider_events(app: App, max_attempts: int | None = None) -> dict[str, Any]:
    """What the daily cycle and instant routing call before their work: apply stored webhook
    batches and events that earlier attempts could not apply (attempts counted; left listed
    after the limit), then retry cancelling scheduled sends to suppressed addresses."""
    from nurture.store.events import MAX_ATTEMPTS

    events = EventStore(app.engine)
    report = events.apply_pending(app.settings.scanner_click_seconds,
                                  max_attempts or MAX_ATTEMPTS)
    out = report.as_dict()
    cancel = cancel_scheduled_sends(app)
    out["cancelled"], out["cancel_failed"] = cancel["cancelled"], len(cancel["errors"])
    out["errors"] = out["errors"] + cancel["errors"]
    return out
