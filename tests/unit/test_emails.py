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


DOMAINS = ["example.com", "Example.COM", "mail.example.co.uk", "münchen.example",
           "xn--mnchen-3ya.example", "localhost", "x.local", "example", "-bad.com",
           "ab--cd.example", "a" * 64 + ".com", "b" * 240 + ".com", "1.2.3.4", "[1.2.3.4]"]
LOCAL = st.text(alphabet=st.sampled_from(list("abcXYZ09.+_-'!#{}~@ \"\\<>(),;:é")),
                max_size=70)


@settings(max_examples=400, deadline=None)
@given(local=LOCAL, domain=st.sampled_from(DOMAINS))
def test_the_known_domain_shortcut_agrees_with_email_validator(local, domain):
    for d in DOMAINS:  # every domain email-validator accepts is now "known"
        is_email(f"x@{d}")
    text = f"{local}@{domain}"
    want = _authority(text)
    if want is None:
        with pytest.raises(InvalidEmail):
            normalize_email(text)
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
