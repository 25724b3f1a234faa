"""The default transport: each message becomes a real `.eml` file under `outbox/`, plus an
`index.html` to browse them. No account needed, and every file opens in a mail client."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from nurture.adapters.delivery.base import Delivery
from nurture.core.messages import Message, to_eml
from nurture.views.outbox import write_viewer

# one line per attempt to send a touch whose message file already exists (a duplicate send)
DUPLICATES = "duplicates.jsonl"

class OutboxTransport:
    name = "outbox"
    batch_size = 200  # settles exactly after a crash (the file is there or not)

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, touch_id: int) -> Path:
        # bucketed so a million messages do not land in one directory
        return self.dir / f"{touch_id // 10000:04d}" / f"touch-{touch_id}.eml"

    def send_many(self, messages: list[Message]) -> list[Delivery]:
        out = []
        manifest = []
        duplicates = []
        for m in messages:
            path = self._path(m.touch_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            mid = f"outbox-{m.touch_id}"
            out.append(Delivery(m.touch_id, True, mid))
            row = {"touch_id": m.touch_id, "to": m.to_email, "subject": m.subject,
                   "campaign": m.campaign, "step": m.step, "variant": m.variant,
                   "send_at": m.send_at.isoformat(), "file": str(path.relative_to(self.dir)),
                   "written_at": datetime.now(UTC).isoformat()}
            if _write_once(path, to_eml(m)):
                manifest.append(json.dumps(row))
            else:  # sent before: the first message stays, the second attempt is recorded
                duplicates.append(json.dumps(row))
        if duplicates:
            with open(self.dir / DUPLICATES, "a", encoding="utf-8") as fh:
                fh.write("\n".join(duplicates) + "\n")
        if manifest:
            with open(self.dir / "index.jsonl", "a", encoding="utf-8") as fh:
                fh.write("\n".join(manifest) + "\n")
        return out

    def reconcile(self, touch_ids: list[int]) -> dict[int, str | None]:
        return {tid: (f"outbox-{tid}" if self._path(tid).exists() else None)
                for tid in touch_ids}

    def close(self) -> None:
        write_index(self.dir)


def _write_once(path: Path, data: bytes) -> bool:
    """Create `path` with `data` unless it exists: True when written. A temp file linked into
    place is atomic (a crash never leaves half a message) and, unlike a rename, never
    replaces an existing file — so a touch sent twice can never hide its first message."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_bytes(data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def write_index(directory: Path) -> Path:
    """(Re)write the outbox viewer: `index.html` (newest messages first, filterable by
    campaign, step, recipient and subject over *all* messages via `index-data.js`) and one
    `touch-N.html` view beside each `.eml` (rendered HTML in a sandboxed frame, the text part
    and the headers), so a browser shows messages instead of downloading `.eml` files.
    Views are written only when missing or older than their `.eml`."""
    return write_viewer(Path(directory))
