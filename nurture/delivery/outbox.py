"""The default transport: each message becomes a real `.eml` file under `outbox/`, plus an
`index.html` to browse them. No account needed, and every file opens in a mail client."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from nurture.delivery.base import Delivery
from nurture.messages import Message, to_eml


class OutboxTransport:
    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, touch_id: int) -> Path:
        # bucketed so a million messages do not land in one directory
        return self.dir / f"{touch_id // 10000:04d}" / f"touch-{touch_id}.eml"

    def send_many(self, messages: list[Message]) -> list[Delivery]:
        out = []
        manifest = []
        for m in messages:
            path = self._path(m.touch_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(to_eml(m))
            os.replace(tmp, path)  # atomic: a crash never leaves half a message
            mid = f"outbox-{m.touch_id}"
            out.append(Delivery(m.touch_id, True, mid))
            manifest.append(json.dumps({
                "touch_id": m.touch_id, "to": m.to_email, "subject": m.subject,
                "campaign": m.campaign, "step": m.step, "variant": m.variant,
                "send_at": m.send_at.isoformat(), "file": str(path.relative_to(self.dir)),
                "written_at": datetime.now(UTC).isoformat()}))
        if manifest:
            with open(self.dir / "index.jsonl", "a", encoding="utf-8") as fh:
                fh.write("\n".join(manifest) + "\n")
        return out

    def reconcile(self, touch_ids: list[int]) -> dict[int, str | None]:
        return {tid: (f"outbox-{tid}" if self._path(tid).exists() else None)
                for tid in touch_ids}

    def close(self) -> None:
        write_index(self.dir)


def write_index(directory: Path) -> Path:
    """(Re)write the outbox viewer: `index.html` (newest messages first, filterable by
    campaign, step, recipient and subject over *all* messages via `index-data.js`) and one
    `touch-N.html` view beside each `.eml` (rendered HTML in a sandboxed frame, the text part
    and the headers), so a browser shows messages instead of downloading `.eml` files.
    Views are written only when missing or older than their `.eml`."""
    from nurture.outbox_viewer import write_viewer

    return write_viewer(Path(directory))
