"""Cancelling a scheduled send at SendGrid (`/v3/user/scheduled_sends`): used when a lead is
suppressed between the send and its `send_at`. The canceller is built in `nurture.wiring`."""

from __future__ import annotations

import httpx

from nurture.adapters.delivery.sendgrid import error_text
from nurture.core.provider_events import CancelFailed


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
        raise CancelFailed(f"SendGrid did not cancel batch {batch_id}: "
                           f"{error_text(r.status_code, r.text)}")

    def close(self) -> None:
        self._client.close()
