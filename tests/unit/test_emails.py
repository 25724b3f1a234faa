"""One email rule (`nurture.core.emails`): what it accepts, what it refuses and why, and that
its shortcut for known domains always agrees with email-validator itself."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nurture.core.config import Sender
from nurture.core.emails import InvalidEmail, is_email, normalize_email


@pytest.mark.parametrize(("text", "key"), [
    ("ann@example.com", "ann@example.com"),
    ("  Ann.Lee+news@Example.COM \n", "ann.lee+news@example.com"),
    ("o'brien@sub.example.co.uk", "o'brien@sub.example.co.uk"),
    ("zoe@münchen.example", "zoe@xn--mnchen-3ya.example"),  # stored in ASCII (IDNA)
    ("zoe@XN--MNCHEN-3YA.example", "zoe@xn--mnchen-3ya.example"),  # the same lead
])
def test_a_valid_address_becomes_its_lead_key(text, key):
    assert normalize_email(text) == key
    assert normalize_email(text) == key  # the second time through the known-domain path


@pytest.mark.parametrize(("text", "why"), [
    ("", "must have an @-sign"),
    ("not-an-email", "must have an @-sign"),
    ("a..b@example.com", "two periods in a row"),
    ("ann lee@example.com", "invalid characters before the @-sign"),
    ("ann@example", "should have a period"),
    ("ann@example.com.", "cannot end with a period"),
    ("ann@-example.com", "hyphen immediately after the @-sign"),
    ("zoë@example.com", "internationalized characters before the @-sign are not"),
    ("ann@printer.local", "special-use or reserved name"),
    ("a@b@example.com", "invalid characters"),
    ("x" * 250 + "@example.com", "too long"),
])
def test_an_invalid_address_is_refused_with_the_reason(text, why):
    normalize_email("someone@example.com")  # a known domain takes no shortcut past a check
    with pytest.raises(InvalidEmail) as caught:
        normalize_email(text)
    assert why in caught.value.reason
    assert caught.value.email == text and str(caught.value).startswith("not an email address")
    assert not is_email(text)


def _authority(text: str) -> str | None:
    """What email-validator alone says about `text` under our rule."""
    try:
        info = validate_email(text.strip().lower(), check_deliverability=False,
                              allow_smtputf8=False)
    except EmailNotValidError:
        return None
    return info.ascii_email.lower()


LOCAL = st.text(alphabet=st.sampled_from(list("abcXYZ09.+_-'!#{}~@ \"\\<>(),;:é")),
                max_size=70)
LABEL = st.one_of(
    st.text(alphabet=st.sampled_from(list("abz09-")), min_size=0, max_size=66),
    st.sampled_from(["com", "example", "xn--mnchen-3ya", "münchen", "EXAMPLE", "1", "a_b",
                     "local", "localhost", "test", "onion", "arpa", "invalid", "ab--cd"]))
DOMAIN = st.one_of(st.lists(LABEL, min_size=1, max_size=5).map(".".join),
                   st.sampled_from(["b" * 240 + ".com", "[1.2.3.4]", "example.com."]))


@settings(max_examples=1500, deadline=None)
@given(local=LOCAL, domain=DOMAIN)
def test_the_plain_ascii_shortcut_agrees_with_email_validator(local, domain):
    text = f"{local}@{domain}"
    want = _authority(text)
    if want is None:
        with pytest.raises(InvalidEmail):
            normalize_email(text)
    else:
        assert normalize_email(text) == want


@pytest.mark.parametrize("domain", ["example.com", "a-b.example.co.uk", "x" * 63 + ".com",
                                    "x" * 64 + ".com", "mail.local", "host.test", "example",
                                    "example.c0m", "example.123", "-a.com", "a-.com",
                                    "ab--cd.com", "xn--mnchen-3ya.example", "a..b.com"])
def test_the_shortcut_on_edge_domains(domain):
    for local in ("ann", "a.b+c", "x" * 64, "x" * 180):
        text = f"{local}@{domain}"
        want = _authority(text)
        if want is None:
            assert not is_email(text), text
        else:
            assert normalize_email(text) == want


def test_config_addresses_use_the_same_rule_and_say_why():
    ok = Sender(from_email="marketing@acme.example", from_name="Acme",
                postal_address="1 Main St, Springfield")
    assert ok.from_email == "marketing@acme.example"  # kept as written
    with pytest.raises(ValidationError, match=r"not an email address: 'marketing@acme' "
                                              r"\(.*should have a period\)"):
        Sender(from_email="marketing@acme", from_name="Acme",
               postal_address="1 Main St, Springfield")
