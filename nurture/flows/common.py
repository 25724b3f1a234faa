"""What the flows share: parsing `as_of`, run names, opening the store and config so that a
failure explains itself in the Prefect UI, and announcing recorded lead events to Prefect."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.events import emit_event
from prefect.events.worker import EventsWorker
from prefect.runtime import flow_run

from nurture.core.config import ConfigError
from nurture.core.domain import EVENT_NAMESPACE
from nurture.services.ingest import parse_time
from nurture.settings import Settings
from nurture.store.lead_events import LeadEventOutbox, PendingEvent
from nurture.wiring import App, NotMigrated


class ConfigInvalid(ValueError):
    """The campaigns/templates do not validate; the message lists every problem, exactly as
    `nurture validate` prints them, so the run's state message is the whole to-do list."""


def parse_as_of(as_of: str | datetime | None) -> datetime:
    if as_of is None or as_of == "":
        return datetime.now(UTC)
    if isinstance(as_of, datetime):
        return as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of.astimezone(UTC)
    return parse_time(as_of)


def run_suffix() -> str:
    """Four hex digits of the flow run id: runs with the same date (re-runs, simulations of
    one day) still get distinct names."""
    return str(flow_run.id or uuid.uuid4()).replace("-", "")[:4]


def dated_run_name(prefix: str, as_of: Any, dry_run: bool = False) -> str:
    """`<prefix>-YYYY-MM-DD-HHMM[-dry-run]-<suffix>` from `as_of` (UTC; default now)."""
    try:
        stamp = f"{parse_as_of(as_of):%Y-%m-%d-%H%M}"
    except (ValueError, TypeError):
        stamp = "bad-as-of"
    return f"{prefix}-{stamp}{'-dry-run' if dry_run else ''}-{run_suffix()}"


def lead_ref(email: str) -> str:
    """A stable pseudonym for a lead in run names: no personal data in names the whole
    workspace sees, yet two runs about the same lead share it."""
    norm = (email or "").strip().lower()
    return "lead-" + hashlib.sha256(norm.encode()).hexdigest()[:8]


def open_app(campaigns_dir: str | None = None, need_config: bool = True):
    """The flow's `App`, checked before any work: the database exists and is migrated (a
    missing SQLite file is not created empty), and the config validates — else one error
    naming every problem, each also logged."""
    app = App(Settings(**({"campaigns_dir": campaigns_dir} if campaigns_dir else {})))
    url = app.settings.database_url
    if url.startswith("sqlite") and "///" in url:
        path = url.split("///", 1)[1].split("?", 1)[0]
        if path and path != ":memory:" and not Path(path).is_file():
            raise NotMigrated(f"the database file {Path(path).resolve()} does not exist "
                              f"(NURTURE_DATABASE_URL={url}, working directory {Path.cwd()}); "
                              "run `nurture db upgrade` with the same settings first")
    app.require_schema()
    if need_config:
        try:
            app.config  # noqa: B018 - validate before anything is written
        except ConfigError as exc:
            logger = get_run_logger()
            for problem in exc.problems:
                logger.error("config problem: %s", problem)
            raise ConfigInvalid(f"{len(exc.problems)} config problem(s) in "
                                f"{app.settings.campaigns_dir} (`nurture validate` lists the "
                                "same):\n" + exc.report()) from None
    return app


def prefect_event_id(ev: PendingEvent) -> uuid.UUID:
    """A lead event's Prefect event id, fixed by its key: re-emitting it after a crash is a
    no-op in Prefect's event store, and another database's event with the same row id is
    another event (Prefect's SQLite event store fails a batch made only of known ids)."""
    return uuid.uuid5(EVENT_NAMESPACE, ev.key)


def emit_lead_events(app: Any, lease: Any) -> list[dict[str, Any]]:
    """Emit every recorded, not yet emitted lead event (this run's and any a stopped run
    left), each under its fixed event id, then mark them. Returns what was emitted (event
    name, lead id and payload) so a flow can list it in an artifact."""
    announcer = LeadAnnouncer(app, lease)
    emitted = announcer.announce()
    announcer.settle()
    return emitted


class LeadAnnouncer:
    """Lead events announced as a run goes: `announce()` emits what is recorded and returns
    at once, Prefect's events worker sending them in the background while the run works on;
    they are marked emitted when they have been handed to the server — at the next
    `announce()` or at `settle()`, which the run calls last. Marking only after the hand-over
    keeps the promise: a crash in between re-emits them under the same ids, never loses one."""

    def __init__(self, app: Any, lease: Any) -> None:
        self.outbox = LeadEventOutbox(app.engine)
        self.lease = lease
        self.unmarked: list[int] = []

    def announce(self) -> list[dict[str, Any]]:
        emitted: list[dict[str, Any]] = []
        while True:
            self.settle()  # before claiming: a claimed, unmarked event would be claimed again
            self.lease.check()
            batch = self.outbox.claim(self.lease.run_id, self.lease.lapse)
            if not batch:
                return emitted
            emitted += self._emit(batch)
            self.unmarked = [ev.id for ev in batch]

    def settle(self) -> None:
        if self.unmarked:
            _flush()  # handed to the server before they are marked
            self.outbox.mark_emitted(self.unmarked, self.lease.run_id)
            self.unmarked = []

    def _emit(self, batch: list[PendingEvent]) -> list[dict[str, Any]]:
        campaigns, stages = self.outbox.context(batch)
        emitted = []
        for ev in batch:
            p = dict(ev.payload)
            for key, value in stages.get(ev.id, {}).items():
                p.setdefault(key, value)
            if not p.get("campaign"):
                p["campaign"] = campaigns.get(ev.lead_id)
            campaign = p.get("campaign")
            name = f"nurture.lead.{ev.kind}"
            emit_event(
                event=name,
                resource={"prefect.resource.id": f"nurture.lead.{ev.lead_id}",
                          "prefect.resource.name": p.get("email") or f"lead {ev.lead_id}"},
                related=[{"prefect.resource.id": f"nurture.campaign.{campaign}",
                          "prefect.resource.role": "campaign",
                          "prefect.resource.name": campaign}] if campaign else None,
                payload=p, id=prefect_event_id(ev))
            emitted.append({"event": name, "lead_id": ev.lead_id, **p})
        return emitted


def _flush() -> None:
    EventsWorker.instance().wait_until_empty()


def changes_markdown(title: str, summary: str, emitted: list[dict[str, Any]]) -> str:
    """What a run changed, for a person (a markdown artifact): one line per lead event it
    announced — lead, campaign, from → to stage, owner or actor, the rule. A list, not a
    table: long email addresses and rule names wrap instead of pushing columns out of a
    1280 px window."""
    lines = [f"# {title}", "", summary, ""]
    if not emitted:
        return "\n".join(lines + ["No lead changed stage.", ""])
    for e in emitted:
        to = e.get("to") or e["event"].rsplit(".", 1)[1]
        who = (f"owner {e['owner']}" if e.get("owner")
               else f"by {e['actor']}" if e.get("actor") else "")
        lines.append(
            f"- **#{e['lead_id']} {e.get('email') or ''}**"
            f" ({e.get('campaign') or 'no campaign'}): {e.get('from') or '?'} → **{to}**"
            + (f", {who}" if who else "")
            + f"; rule `{e.get('rule') or 'none'}` (`{e['event']}`)")
    return "\n".join(lines + [""])
