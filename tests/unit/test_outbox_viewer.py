"""The outbox viewer: every message (not only the newest 1,000) gets a view page a browser
shows — HTML in a sandboxed frame, text part, headers — and the index lists all of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from nurture.adapters.delivery.outbox import OutboxTransport
from nurture.core.messages import build_message
from nurture.core.rendering import RenderedEmail

SEND_AT = datetime(2026, 11, 18, 14, 0, tzinfo=UTC)


def message(config, touch_id: int, campaign: str = "inbound-saas", step: str = "case-study",
            to: str | None = None, subject: str = "Hello"):
    c = config.campaign(campaign)
    html = f"<html><body><p>Body of {touch_id}</p><script>parent.x=1</script></body></html>"
    rendered = RenderedEmail(subject, html, f"Body of {touch_id}\n")
    return build_message(touch_id, {"email": to or f"lead{touch_id}@example.com",
                                    "first_name": "Ann"}, c.sender, rendered,
                         "https://n.example/unsubscribe/t", SEND_AT, campaign, step, None)


def test_every_message_gets_a_view_and_a_row(config, tmp_path):
    outbox = OutboxTransport(tmp_path)
    outbox.send_many([message(config, i, subject=f"Subject <{i}>") for i in range(1, 1251)])
    outbox.send_many([message(config, 20001, "webinar-followup", "product-tour",
                              "vip@big.example")])
    outbox.close()
    data = (tmp_path / "index-data.js").read_text()
    assert data.startswith("window.OUTBOX = ")
    rows = json.loads(data[len("window.OUTBOX = "):].rstrip().rstrip(";"))
    assert len(rows) == 1251  # all of them, newest first
    assert rows[0]["touch_id"] == 20001 and rows[0]["view"] == "0002/touch-20001.html"
    assert "<" not in data  # a subject's markup cannot close the script element
    index = (tmp_path / "index.html").read_text()
    assert "1251 message(s)" in index
    assert index.count("<tr>") == 1 + 200  # header + the newest 200 without JavaScript
    assert 'href="0002/touch-20001.html"' in index and "Subject &lt;1250&gt;" in index
    view = (tmp_path / "0000" / "touch-7.html").read_text()
    assert '<iframe sandbox=""' in view
    assert "Body of 7" in view and "lead7@example.com" in view
    assert "List-Unsubscribe" in view and "&lt;https://n.example/unsubscribe/t&gt;" in view
    assert "<script>parent.x=1</script>" not in view  # only inside the escaped srcdoc


def test_views_are_rewritten_only_when_the_eml_changes(config, tmp_path):
    outbox = OutboxTransport(tmp_path)
    outbox.send_many([message(config, 1)])
    outbox.close()
    view = tmp_path / "0000" / "touch-1.html"
    view.write_text("kept")
    outbox.close()
    assert view.read_text() == "kept"


def test_torn_manifest_line_is_skipped(config, tmp_path):
    outbox = OutboxTransport(tmp_path)
    outbox.send_many([message(config, 1)])
    with open(tmp_path / "index.jsonl", "a") as fh:
        fh.write('{"touch_id": 2, "to": "x@')
    outbox.close()
    assert "1 message(s)" in (tmp_path / "index.html").read_text()
