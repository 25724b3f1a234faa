"""Rendering (sandboxed, autoescaped, strict Jinja), the MIME message, the outbox and memory
transports, and signed unsubscribe tokens."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nurture.adapters.delivery.memory import MemoryTransport
from nurture.adapters.delivery.outbox import OutboxTransport
from nurture.core.config import Campaign, Config, Step, Track
from nurture.core.messages import Message, build_message, to_mime
from nurture.core.rendering import RenderedEmail, Renderer, RenderError, one_line, sample_lead
from nurture.core.unsubscribe import BadToken, make_token, read_token, unsubscribe_url

UNSUB = "https://nurture.acme.example/unsubscribe/tok123"
SEND_AT = datetime(2026, 11, 18, 14, 0, tzinfo=UTC)
SECRET = "s3cret-key-for-tests"


@pytest.fixture(scope="module")
def renderer(templates_dir: Path) -> Renderer:
    return Renderer(templates_dir)


@pytest.fixture(scope="module")
def inbound(config: Config) -> Campaign:
    return config.campaign("inbound-saas")


def step_of(campaign: Campaign, step_id: str) -> tuple[Track, Step]:
    found = campaign.step(step_id)
    assert found is not None
    return found


def lead(**overrides) -> dict:
    return sample_lead() | overrides


def render(renderer: Renderer, campaign: Campaign, step_id: str = "buyers-guide",
           variant: str | None = None, **fields) -> RenderedEmail:
    track, step = step_of(campaign, step_id)
    return renderer.render(campaign, track, step, variant, lead(**fields), UNSUB)


@pytest.fixture
def scratch(tmp_path: Path, templates_dir: Path):
    """A templates dir with the real base layout plus templates written by the test; returns
    `render(html, subject=..., text=None, **lead_fields)`."""
    (tmp_path / "base.html.j2").write_text(
        (templates_dir / "base.html.j2").read_text(encoding="utf-8"), encoding="utf-8")
    sender = {"from_email": "m@acme.example", "from_name": "Acme",
              "postal_address": "Acme Inc., 1 Main Street, Springfield, USA"}

    def run(html: str, subject: str = "Hello", text: str | None = None, **fields
            ) -> RenderedEmail:
        (tmp_path / "t.html.j2").write_text(html, encoding="utf-8")
        if text is not None:
            (tmp_path / "t.txt.j2").write_text(text, encoding="utf-8")
        step = Step(id="s", subject=subject, template="t.html.j2")
        track = Track(name="t", stage="research", cadence_days=7, steps=[step])
        campaign = Campaign(name="c", sender=sender, tracks=[track])
        return Renderer(tmp_path).render(campaign, track, step, None, lead(**fields), UNSUB)

    return run


# -- the real templates ----------------------------------------------------------------------
def test_renders_subject_html_and_text(renderer, inbound):
    r = render(renderer, inbound)
    assert r.subject == "Jordan, the buyer's guide to lead management"
    assert r.html.lstrip().startswith("<!DOCTYPE html>")
    assert "Hi Jordan," in r.html and "Example Corp" in r.html
    assert "Hi Jordan," in r.text and "<" not in r.text


def test_every_step_and_variant_renders_for_the_sample_lead(renderer, config):
    count = 0
    for campaign in config.campaigns:
        for track in campaign.tracks:
            for step in track.steps:
                for variant in [v.id for v in step.variants or []] or [None]:
                    r = renderer.render(campaign, track, step, variant, sample_lead(), UNSUB)
                    assert r.subject and "\n" not in r.subject
                    assert UNSUB in r.html and UNSUB in r.text
                    count += 1
    assert count == 17  # 15 steps, two of them with two variants


def test_variant_subjects_and_bodies(renderer, inbound):
    a = render(renderer, inbound, "demo-invite", "a")
    b = render(renderer, inbound, "demo-invite", "b")
    assert a.subject == "See it live in 20 minutes"
    assert b.subject == "Jordan, want a walkthrough?"
    assert "Reading about lead management only gets you so far" in a.html
    assert "You have read the guides and run the numbers" in b.html


def test_missing_optional_lead_data_uses_the_templates_fallbacks(renderer, inbound):
    r = render(renderer, inbound, first_name=None, company=None)
    assert r.subject == "Hi, the buyer's guide to lead management"
    assert "Hi there," in r.html and "how your team captures" in r.html


# -- escaping --------------------------------------------------------------------------------
def test_lead_data_is_html_escaped(renderer, inbound):
    r = render(renderer, inbound, first_name="<script>alert(1)</script>",
               company='"><img src=x onerror=alert(2)>')
    assert "<script>alert(1)</script>" not in r.html
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;," in r.html
    assert "<img src=x" not in r.html
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in r.html
    # the text part shows what the lead typed, as text
    assert "Hi <script>alert(1)</script>," in r.text


def test_subject_is_plain_text_not_html(renderer, inbound):
    r = render(renderer, inbound, "roi-calculator", company="Smith & Sons <UK>")
    assert r.subject == "What faster follow-up is worth to Smith & Sons <UK>"


@pytest.mark.parametrize("name", ["Jordan\r\nBcc: x@y.example", "Jordan\nBcc: x@y.example",
                                  "Jordan\rBcc: x@y.example", "Jordan\u2028Bcc: x@y.example"])
def test_subject_renders_to_one_line(renderer, inbound, name):
    r = render(renderer, inbound, first_name=name)
    assert r.subject == "Jordan Bcc: x@y.example, the buyer's guide to lead management"


def test_one_line_collapses_control_characters_and_spaces():
    assert one_line("  a\t\tb\r\n\r\nc\x00d\x7fe  ") == "a b c d e"


def test_header_injection_through_lead_data_is_impossible(renderer, inbound, config):
    fields = lead(first_name="Jordan\r\nBcc: x@y.example", last_name="Lee\r\nCc: z@y.example")
    track, step = step_of(inbound, "buyers-guide")
    rendered = renderer.render(inbound, track, step, None, fields, UNSUB)
    msg = build_message(7, fields, inbound.sender, rendered, UNSUB, SEND_AT, inbound.name,
                        step.id, None)
    raw = bytes(to_mime(msg))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith((b"bcc:", b"cc:")) for line in head.split(b"\r\n"))
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed["Bcc"] is None and parsed["Cc"] is None
    (to,) = parsed["To"].addresses
    assert to.addr_spec == "jordan.lee@example.com"
    assert to.display_name == "Jordan Bcc: x@y.example Lee Cc: z@y.example"
    assert parsed["Subject"] == "Jordan Bcc: x@y.example, the buyer's guide to lead management"


# -- sandbox and strictness ------------------------------------------------------------------
@pytest.mark.parametrize("source", [
    "{{ lead.__class__ }}",
    "{{ lead.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ sender.__init__.__globals__ }}",
    "{{ lead.items.__self__.__class__ }}",
    "{% for k in lead.__class__.__dict__ %}{{ k }}{% endfor %}",
    "{{ cycler.__init__.__globals__.os }}",
])
def test_templates_cannot_reach_into_python(scratch, source):
    with pytest.raises(RenderError, match="is unsafe") as exc:
        scratch(source)
    assert "t.html.j2" in str(exc.value)


@pytest.mark.parametrize(("html", "subject"), [
    ("{{ lead.update(email='attacker@evil.example') }}", "Hello"),
    ("ok", "{{ lead.pop('email') }}"),
    ("{% set _ = lead.__setitem__('email', 'x@evil.example') %}", "Hello"),
    ("{{ lead.clear() }}", "Hello"),
])
def test_templates_cannot_change_the_lead_they_render(tmp_path, inbound, html, subject):
    # the same dict goes on to build the message: a template must not redirect the email
    (tmp_path / "t.html.j2").write_text(html, encoding="utf-8")
    track, step = step_of(inbound, "buyers-guide")
    step = step.model_copy(update={"template": "t.html.j2", "subject": subject})
    data = lead()
    with pytest.raises(RenderError, match="unsafe"):
        Renderer(tmp_path).render(inbound, track, step, None, data, UNSUB)
    assert data == sample_lead()


def test_subjects_are_sandboxed_too(scratch):
    with pytest.raises(RenderError, match="subject of c/s failed to render: .*unsafe"):
        scratch("ok", subject="{{ lead.__class__ }}")


def test_undefined_names_are_errors_not_blanks(scratch):
    with pytest.raises(RenderError, match="nickname"):
        scratch("<p>Hi {{ lead.nickname }}</p>")
    with pytest.raises(RenderError, match="'lede' is undefined"):
        scratch("<p>Hi {{ lede.first_name }}</p>")
    with pytest.raises(RenderError, match=r"subject of c/s failed to render: .*nickname"):
        scratch("ok", subject="Hi {{ lead.nickname }}")


def test_empty_subject_is_an_error(scratch):
    with pytest.raises(RenderError, match="rendered empty"):
        scratch("ok", subject="{{ lead.first_name }}", first_name=" \r\n ")


def test_templates_see_the_documented_context(scratch):
    r = scratch("{{ campaign.name }}|{{ track.name }}/{{ track.stage }}|{{ step.id }}|"
                "{{ sender.from_email }}|{{ unsubscribe_url }}|{{ lead.utm_source }}",
                subject="{{ step.id }} {{ campaign.name }}")
    assert r.html == f"c|t/research|s|m@acme.example|{UNSUB}|google"
    assert r.subject == "s c"


def test_text_template_is_used_when_present_and_not_escaped(scratch):
    r = scratch("<p>Hi {{ lead.first_name }}</p>", text="Hi {{ lead.first_name }}!\n",
                first_name="Tom & <Jerry>")
    assert r.html == "<p>Hi Tom &amp; &lt;Jerry&gt;</p>"
    assert r.text == "Hi Tom & <Jerry>!"


# -- base layout -----------------------------------------------------------------------------
class _Links(HTMLParser):
    """Anchors with their text, and whether an ancestor hides them (display:none)."""

    VOID = {"meta", "br", "img", "hr", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.links: list[dict] = []
        self.current: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        hidden = "display:none" in (a.get("style") or "").replace(" ", "")
        if tag not in self.VOID:
            self.stack.append(hidden)
        if tag == "a":
            self.current = {"href": a.get("href"), "text": "", "hidden": any(self.stack)}
            self.links.append(self.current)

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()
        if tag == "a":
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.current["text"] += data


def test_base_layout_has_a_visible_unsubscribe_link_and_postal_address(renderer, config):
    for campaign in config.campaigns:
        track = campaign.tracks[0]
        step = track.steps[0]
        r = renderer.render(campaign, track, step, None, sample_lead(), UNSUB)
        parser = _Links()
        parser.feed(r.html)
        unsub = [link for link in parser.links if link["href"] == UNSUB]
        assert len(unsub) == 1, campaign.name
        assert unsub[0]["text"].strip() == "Unsubscribe"
        assert unsub[0]["hidden"] is False
        assert campaign.sender.postal_address in r.html
        assert campaign.sender.postal_address in r.text
        assert f"Unsubscribe ({UNSUB})" in r.text


def test_link_parser_detects_hidden_links():
    # guards the test above: a link in the hidden preheader would be reported as hidden
    parser = _Links()
    parser.feed('<div style="display:none; x"><a href="u">Unsubscribe</a></div><a href="v">x</a>')
    assert [(x["href"], x["hidden"]) for x in parser.links] == [("u", True), ("v", False)]


# -- MIME and the outbox ---------------------------------------------------------------------
def make_message(renderer: Renderer, campaign: Campaign, touch_id: int = 12345,
                 step_id: str = "buyers-guide", variant: str | None = None, **fields
                 ) -> Message:
    data = lead(**fields)
    track, step = step_of(campaign, step_id)
    rendered = renderer.render(campaign, track, step, variant, data, UNSUB)
    return build_message(touch_id, data, campaign.sender, rendered, UNSUB, SEND_AT,
                         campaign.name, step.id, variant)


def parse(path: Path) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(msg, EmailMessage)
    return msg


def test_message_tags_map_provider_events_back_to_the_touch(renderer, inbound):
    msg = make_message(renderer, inbound, 42, "demo-invite", "b")
    assert msg.to_email == "jordan.lee@example.com" and msg.to_name == "Jordan Lee"
    assert msg.categories == ["campaign:inbound-saas", "step:demo-invite"]
    assert msg.custom_args == {"touch_id": "42", "campaign": "inbound-saas",
                               "step": "demo-invite", "variant": "b"}


def test_outbox_writes_a_valid_mime_eml(renderer, inbound, tmp_path):
    outbox = OutboxTransport(tmp_path / "outbox")
    msg = make_message(renderer, inbound)
    (delivery,) = outbox.send_many([msg])
    assert (delivery.touch_id, delivery.ok, delivery.message_id) == (12345, True, "outbox-12345")
    path = tmp_path / "outbox" / "0001" / "touch-12345.eml"
    eml = parse(path)
    assert eml.defects == []
    assert eml["From"] == "Acme Marketing <marketing@acme.example>"
    assert eml["To"] == "Jordan Lee <jordan.lee@example.com>"
    assert eml["Reply-To"] == "sales@acme.example"
    assert eml["Subject"] == "Jordan, the buyer's guide to lead management"
    assert eml["List-Unsubscribe"] == f"<{UNSUB}>"
    assert eml["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert eml["Date"].datetime == SEND_AT
    msgid = str(eml["Message-ID"]).strip()  # may be folded: FWS before msg-id is valid
    assert msgid.startswith("<") and msgid.endswith("@nurture.local>") and "touch-12345" in msgid
    assert eml["X-Nurture-Touch-Id"] == "12345"
    assert eml.get_content_type() == "multipart/alternative"
    parts = list(eml.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.defects == [] for p in parts)
    text = eml.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = eml.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert text == msg.text
    assert html.rstrip("\n") == msg.html.rstrip("\n")
    assert f"Unsubscribe ({UNSUB})" in text and f'href="{UNSUB}"' in html
    assert not list(path.parent.glob("*.tmp"))


def test_list_unsubscribe_carries_a_real_signed_url_as_is(renderer, inbound, tmp_path):
    # a real token makes a URL far longer than a 78-character header line; mail clients read
    # the header as `<url>`, so it must not be folded into RFC 2047 encoded-words
    email = "jordan.lee.with.a.long.name@example-company.co.uk"
    url = unsubscribe_url("https://nurture.acme.example",
                          make_token(SECRET, email, "inbound-saas", 123456789))
    assert len(url) > 150
    data = lead(email=email)
    track, step = step_of(inbound, "buyers-guide")
    rendered = renderer.render(inbound, track, step, None, data, url)
    msg = build_message(123456789, data, inbound.sender, rendered, url, SEND_AT, inbound.name,
                        step.id, None)
    OutboxTransport(tmp_path).send_many([msg])
    path = tmp_path / "12345" / "touch-123456789.eml"
    raw = path.read_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert f"List-Unsubscribe: <{url}>".encode() in head
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in head
    eml = parse(path)
    header_url = str(eml["List-Unsubscribe"]).strip().removeprefix("<").removesuffix(">")
    assert header_url == url
    token = header_url.rsplit("/", 1)[1]
    assert read_token(SECRET, token) == {"email": email, "campaign": "inbound-saas",
                                         "touch_id": 123456789}
    assert f'href="{url}"' in eml.get_body(("html",)).get_content()


def test_non_ascii_subject_and_names_survive_the_round_trip(renderer, inbound, tmp_path):
    outbox = OutboxTransport(tmp_path)
    outbox.send_many([make_message(renderer, inbound, 3, first_name="Zoë", last_name="Ångström",
                                   company="Müller GmbH")])
    eml = parse(tmp_path / "0000" / "touch-3.eml")
    assert eml.defects == []
    assert eml["Subject"] == "Zoë, the buyer's guide to lead management"
    assert eml["To"].addresses[0].display_name == "Zoë Ångström"
    assert "Müller GmbH" in eml.get_body(("html",)).get_content()


def test_outbox_index_lists_the_messages(renderer, inbound, tmp_path):
    outbox = OutboxTransport(tmp_path)
    first = make_message(renderer, inbound, 1)
    second = make_message(renderer, inbound, 20001, "roi-calculator",
                          email="ceo@big.example", company="<Big & Co>")
    outbox.send_many([first])
    outbox.send_many([second])
    outbox.close()
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "2 message(s)" in index
    assert 'href="0000/touch-1.eml"' in index and 'href="0002/touch-20001.eml"' in index
    assert "jordan.lee@example.com" in index and "ceo@big.example" in index
    assert "What faster follow-up is worth to &lt;Big &amp; Co&gt;" in index
    assert "<Big & Co>" not in index
    assert index.index("touch-20001.eml") < index.index("touch-1.eml")  # newest first
    rows = [json.loads(line) for line in
            (tmp_path / "index.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["touch_id"], r["to"], r["file"]) for r in rows] == [
        (1, "jordan.lee@example.com", "0000/touch-1.eml"),
        (20001, "ceo@big.example", "0002/touch-20001.eml")]
    for name in ("0000/touch-1.eml", "0002/touch-20001.eml"):
        assert parse(tmp_path / name)["To"] is not None


def test_outbox_reconcile_knows_what_it_wrote(renderer, inbound, tmp_path):
    outbox = OutboxTransport(tmp_path)
    outbox.send_many([make_message(renderer, inbound, 5)])
    assert outbox.reconcile([5, 6]) == {5: "outbox-5", 6: None}


def test_memory_transport_keeps_messages_and_reconciles(renderer, inbound):
    transport = MemoryTransport()
    msgs = [make_message(renderer, inbound, i) for i in (1, 2)]
    deliveries = transport.send_many(msgs)
    assert [(d.touch_id, d.ok, d.message_id) for d in deliveries] == [
        (1, True, "mem-1"), (2, True, "mem-2")]
    assert transport.sent == msgs
    assert transport.reconcile([2, 3]) == {2: "mem-2", 3: None}


# -- unsubscribe tokens ----------------------------------------------------------------------
def test_token_round_trip():
    token = make_token(SECRET, "jordan.lee@example.com", "inbound-saas", 42)
    assert read_token(SECRET, token) == {"email": "jordan.lee@example.com",
                                         "campaign": "inbound-saas", "touch_id": 42}
    assert read_token(SECRET, make_token(SECRET, "a@b.example")) == {
        "email": "a@b.example", "campaign": None, "touch_id": None}


def test_token_is_url_safe():
    token = make_token(SECRET, "zoë+tag@example.com", "c", 1)
    assert all(c.isalnum() or c in "-_." for c in token)
    assert unsubscribe_url("https://x.example/", token) == f"https://x.example/unsubscribe/{token}"
    assert unsubscribe_url("https://x.example", token) == f"https://x.example/unsubscribe/{token}"
    assert read_token(SECRET, token)["email"] == "zoë+tag@example.com"


def test_tampered_tokens_are_rejected():
    token = make_token(SECRET, "jordan.lee@example.com", "inbound-saas", 42)
    body, sig = token.split(".")
    forged_body = make_token(SECRET, "victim@example.com", "inbound-saas", 42).split(".")[0]
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    for bad in (f"{forged_body}.{sig}", f"{body}.{flipped}", f"{body}.", body, "",
                "not-a-token", f"{body}.{sig}x", f"{body}.é"):
        with pytest.raises(BadToken):
            read_token(SECRET, bad)


def test_token_from_another_secret_is_rejected():
    token = make_token("another-install", "jordan.lee@example.com")
    with pytest.raises(BadToken, match="signature"):
        read_token(SECRET, token)
