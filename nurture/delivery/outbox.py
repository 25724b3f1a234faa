"""The default transport: each message becomes a real `.eml` file under `outbox/`, plus an
`index.html` to browse them. No account needed, and every file opens in a mail client."""

from __future__ import annotations

import html
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from nurture.delivery.base import Delivery
from nurture.messages import Message, to_eml

INDEX_ROWS = 1000  # the index page lists the newest messages; index.jsonl lists them all
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
    """(Re)write `index.html` from `index.jsonl`: newest messages first."""
    directory = Path(directory)
    manifest = directory / "index.jsonl"
    rows = []
    total = 0
    if manifest.exists():
        with open(manifest, encoding="utf-8") as fh:
            lines = fh.readlines()
        total = len(lines)
        for line in reversed(lines[-INDEX_ROWS:]):
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    esc = html.escape
    body = "\n".join(
        f"<tr><td>{esc(r['send_at'][:16].replace('T', ' '))}</td><td>{esc(r['to'])}</td>"
        f"<td>{esc(r['campaign'])}</td><td>{esc(r['step'])}"
        f"{' / ' + esc(r['variant']) if r.get('variant') else ''}</td>"
        f"<td><a href=\"{esc(r['file'])}\">{esc(r['subject'])}</a></td></tr>" for r in rows)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nurture outbox</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#1f2937}}
table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;padding:.35rem .6rem;
border-bottom:1px solid #e5e7eb;font-size:.9rem}}th{{background:#f3f4f6}}</style></head>
<body><h1>Outbox</h1>
<p>{total} message(s) written by the <code>outbox</code> transport; newest {len(rows)} shown.
Each links to its <code>.eml</code> file (open it in any mail client).</p>
<table><thead><tr><th>Send at (UTC)</th><th>To</th><th>Campaign</th><th>Step</th>
<th>Subject</th></tr></thead><tbody>
{body}
</tbody></table></body></html>
"""
    path = directory / "index.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
