"""Contract: every Mail Send body the engine produces validates against the project's own schema
(what the fake SendGrid enforces) and against SendGrid's official OpenAPI schema
(`PostMailSend`), and the Event Webhook side means what SendGrid documents. The official files
are not in the repository: see tests/shared_ref.py (`NURTURE_SENDGRID_SCHEMA`); without them
those tests skip, or fail under `NURTURE_REQUIRE_SENDGRID_SCHEMA=1`."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_ref import EVENTS_FILE, SCHEMA_FILE, official_sendgrid_file

from nurture.adapters.delivery.sendgrid import build_mail
from nurture.adapters.sendgrid_events import (
    SignatureVerifier,
    WebhookRejected,
    interpret,
    parse_batch,
)
from nurture.core.config import Sender
from nurture.core.messages import Message

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module", params=["own", "official"])
def validator(request):
    """The project's own schema (always), then SendGrid's official one (when available)."""
    from nurture.devtools.fake_sendgrid import OWN_SCHEMA, load_validator

    if request.param == "own":
        return load_validator(OWN_SCHEMA)
    return load_validator(official_sendgrid_file(SCHEMA_FILE))


def real_messages(config, templates_dir) -> list[Message]:
    """Render every step and variant of the shipped campaigns for awkward leads, the way the
    send phase does (the same render and build functions)."""
    from nurture.core.messages import build_message
    from nurture.core.rendering import Renderer
    from nurture.core.unsubscribe import make_token, unsubscribe_url
    from nurture.store.store import LEAD_COLUMNS

    renderer = Renderer(templates_dir)
    blank = dict.fromkeys(LEAD_COLUMNS) | {"created_at": None}
    leads = [blank | lead for lead in [
        {"email": "jordan.lee@example.com", "first_name": "Jordan", "last_name": "Lee",
         "company": "Example Corp", "industry": "software"},
        {"email": "zoe@example.com", "first_name": "Zoë «Z»", "last_name": "Ørsted",
         "company": "Ünïcode GmbH", "industry": None},
        {"email": "x@example.com", "first_name": "Evil\r\nBcc: a@b.c", "last_name": None,
         "company": "<script>alert(1)</script>", "industry": "retail"},
    ]]
    out = []
    n = 0
    for campaign in config.campaigns:
        for track in campaign.tracks:
            for step in track.steps:
                for variant in (step.variants or [None]):
                    for lead in leads:
                        n += 1
                        url = unsubscribe_url("https://nurture.example",
                                              make_token("k" * 32, lead["email"], campaign.name,
                                                         n))
                        rendered = renderer.render(campaign, track, step,
                                                   variant.id if variant else None, lead, url)
                        out.append(build_message(n, lead, campaign.sender, rendered, url,
                                                 NOW + timedelta(hours=n % 80),
                                                 campaign.name, step.id,
                                                 variant.id if variant else None))
    return out


def test_every_engine_body_validates_against_the_official_schema(validator, config,
                                                                   templates_dir):
    messages = real_messages(config, templates_dir)
    assert len(messages) > 40
    for msg in messages:
        for sandbox in (False, True):
            body = build_mail(msg, sandbox=sandbox, now=NOW)
            errors = [e.message for e in validator.iter_errors(body)]
            assert errors == [], (msg.campaign, msg.step, errors)
            p = body["personalizations"][0]
            assert p["custom_args"]["touch_id"] == str(msg.touch_id)
            assert all(isinstance(v, str) for v in p["custom_args"].values())
            assert "\n" not in body["subject"] and "\r" not in body["subject"]
            assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
            assert len(body["categories"]) <= 10
            if msg.send_at > NOW + timedelta(seconds=60):
                assert p["send_at"] == int(msg.send_at.timestamp())
                assert p["send_at"] <= (NOW + timedelta(hours=72)).timestamp()
            else:
                assert "send_at" not in p
            assert ("mail_settings" in body) is sandbox


def test_the_schema_catches_a_broken_body(validator):
    s = Sender(from_email="m@acme.example", from_name="Acme", reply_to=None,
               postal_address="1 Main St")
    body = build_mail(Message(1, "a@b.example", None, s, "Hi", "<p>x</p>", "x",
                              "https://x/u/t", NOW, "c", "s"), now=NOW)
    assert not list(validator.iter_errors(body))
    for broken in ({k: v for k, v in body.items() if k != "from"},
                   body | {"subject": 5},
                   body | {"personalizations": {"to": "a@b.example"}},
                   body | {"content": [{"type": "text/plain"}]}):
        assert list(validator.iter_errors(broken))


def _sdk_mail(msg: Message, sandbox: bool, now: datetime) -> dict:
    """The same body built with SendGrid's own SDK helpers (`sendgrid.helpers.mail`): the
    oracle `build_mail` is held to."""
    from sendgrid.helpers.mail import (
        Category,
        Content,
        CustomArg,
        From,
        Header,
        Mail,
        MailSettings,
        Personalization,
        ReplyTo,
        SandBoxMode,
        Subject,
        To,
    )

    mail = Mail()
    mail.from_email = From(msg.sender.from_email, msg.sender.from_name)
    if msg.sender.reply_to:
        mail.reply_to = ReplyTo(msg.sender.reply_to)
    mail.subject = Subject(msg.subject)
    p = Personalization()
    p.add_to(To(msg.to_email, msg.to_name))
    for key, value in msg.custom_args.items():
        p.add_custom_arg(CustomArg(key, str(value)))
    p.add_header(Header("List-Unsubscribe", f"<{msg.unsubscribe_url}>"))
    p.add_header(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    if msg.send_at > now + timedelta(seconds=60):
        p.send_at = int(msg.send_at.timestamp())
    mail.add_personalization(p)
    mail.add_content(Content("text/plain", msg.text))
    mail.add_content(Content("text/html", msg.html))
    for category in msg.categories[:10]:
        mail.add_category(Category(category[:255]))
    if sandbox:
        mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    return mail.get()


def test_bodies_are_what_sendgrids_own_sdk_builds(config, templates_dir):
    """build_mail writes the dict directly (the SDK's helpers cost more CPU than the request):
    for every shipped step and awkward lead, with and without a name, reply-to, sandbox,
    scheduled or not, it is the SDK's body, key for key (categories in the order given)."""
    from dataclasses import replace

    s = Sender(from_email="m@acme.example", from_name="Acme Ops", reply_to="r@acme.example",
               postal_address="1 Main St")
    msgs = real_messages(config, templates_dir)
    msgs += [replace(msgs[0], to_name=None, sender=s, send_at=NOW),
             replace(msgs[1], to_name="Zoë", variant="b", tags={"k": "v"},
                     send_at=NOW + timedelta(days=2))]
    assert {bool(m.to_name) for m in msgs} == {True, False}
    assert {m.send_at > NOW + timedelta(seconds=60) for m in msgs} == {True, False}
    for msg in msgs:
        for sandbox in (False, True):
            ours, sdk = build_mail(msg, sandbox=sandbox, now=NOW), _sdk_mail(msg, sandbox, NOW)
            # the SDK prepends each category; their order means nothing to SendGrid
            assert ours.pop("categories") == sdk.pop("categories")[::-1]
            assert ours == sdk


# -- Event Webhook --------------------------------------------------------------------------
def _keypair():
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()

    def sign(payload: bytes, ts: str) -> str:
        return base64.b64encode(key.sign(ts.encode() + payload,
                                         ec.ECDSA(hashes.SHA256()))).decode()
    return public, sign


def test_signature_is_checked_on_the_raw_bytes():
    public, sign = _keypair()
    v = SignatureVerifier(public, max_age_seconds=600)
    raw = json.dumps([{"email": "a@b.c", "event": "open"}]).encode()
    ts = str(int(time.time()))
    v.verify(raw, sign(raw, ts), ts)  # no exception
    reserialised = json.dumps(json.loads(raw), indent=1).encode()  # same JSON, other bytes
    for body, sig, stamp in ((reserialised, sign(raw, ts), ts),
                             (raw, sign(raw, ts), str(int(ts) + 1)),
                             (raw, None, ts),
                             (raw, "bm90LWEtc2ln", ts)):
        with pytest.raises(WebhookRejected) as exc:
            v.verify(body, sig, stamp)
        assert exc.value.status == 403
    old = str(int(time.time()) - 3600)
    with pytest.raises(WebhookRejected, match="stale"):
        v.verify(raw, sign(raw, old), old)
    with pytest.raises(ValueError, match="not a valid"):
        SignatureVerifier("not-a-key")


def test_every_documented_event_has_a_meaning():
    examples = json.loads(official_sendgrid_file(EVENTS_FILE).read_text())
    batch = parse_batch(json.dumps(examples).encode())
    effects = {(e["event"], e.get("type"), e.get("sg_machine_open")): interpret(e)
               for e in batch}
    assert effects[("bounce", "bounce", None)].suppress == "bounce"
    assert effects[("bounce", "blocked", None)].suppress is None
    assert effects[("bounce", "blocked", None)].delivery_status == "blocked"
    assert effects[("open", None, True)].activity == "email_machine_open"
    assert effects[("open", None, False)].activity == "email_open"
    assert effects[("click", None, None)].activity == "email_click"
    assert effects[("spamreport", None, None)].suppress == "spamreport"
    assert effects[("unsubscribe", None, None)].suppress == "unsubscribe"
    assert effects[("group_unsubscribe", None, None)].suppress == "unsubscribe"
    assert effects[("dropped", None, None)].suppress == "bounce"  # "Bounced Address"
    assert effects[("delivered", None, None)].delivery_status == "delivered"
    assert effects[("group_resubscribe", None, None)].suppress is None
    for eff in effects.values():
        assert eff.touch_id is None  # no custom_args in SendGrid's own examples
        assert eff.message_id == "14c5d75ce93"
        assert eff.occurred_at == datetime.fromtimestamp(1513299569, UTC)


def test_custom_args_map_events_back_to_the_touch():
    eff = interpret({"email": " Ana@Example.com", "event": "delivered", "timestamp": 1513299569,
                     "sg_event_id": "e1", "sg_message_id": "abc.filter1", "touch_id": "42",
                     "campaign": "inbound-saas", "step": "buyers-guide"})
    assert (eff.touch_id, eff.email, eff.message_id, eff.event_id) == (
        42, "ana@example.com", "abc", "e1")
    assert eff.properties == {"campaign": "inbound-saas", "step": "buyers-guide"}


def _stdlib(raw: bytes):
    from nurture.adapters.sendgrid_events import _int_or_inf

    return json.loads(raw.decode(), parse_int=_int_or_inf)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
    | st.text(), lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(_json, max_size=5))
def test_batches_read_as_the_stdlib_reads_them(events):
    """parse_batch reads with orjson and falls back to the stdlib's parser where orjson
    refuses (ints past 64 bits, NaN/Infinity, lone surrogates): either way the result is
    what the stdlib alone gives (compared as JSON text: NaN is not equal to itself)."""
    raw = json.dumps(events).encode()
    assert json.dumps(parse_batch(raw)) == json.dumps(_stdlib(raw))


@pytest.mark.parametrize("raw", [b"[" + b"9" * 30 + b"]", b"[NaN, -Infinity]", b"[1e400]",
                                 b'["\\ud800"]', b'[{"a": 1, "a": 2}]', b"[" + b"9" * 4100 + b"]",
                                 b"[" * 900 + b"]" * 900])
def test_what_orjson_refuses_still_reads(raw):
    assert json.dumps(parse_batch(raw)) == json.dumps(_stdlib(raw))


@pytest.mark.parametrize("raw", [b"{}", b"not json", b'[{"a": "\xff"}]', b"[" * 100_000])
def test_malformed_batches_are_refused(raw):
    with pytest.raises(WebhookRejected) as exc:
        parse_batch(raw)
    assert exc.value.status == 400


@pytest.mark.parametrize("raw", [b"[1]", b'[{"event": "open"}]', b'[{"event": "open", '
                                 b'"email": "a@b.example", "timestamp": NaN}]',
                                 b'[{"event": "open", "email": "a@b.example", "timestamp": '
                                 + b"[" * 900 + b"]" * 900 + b"}]"])
def test_a_malformed_event_is_judged_alone(raw):
    from nurture.adapters.sendgrid_events import BadEvent

    [event] = parse_batch(raw)
    with pytest.raises(BadEvent):
        interpret(event)
