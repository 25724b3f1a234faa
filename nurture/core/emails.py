"""The one email-address rule: imports, sales feedback and the campaign config all use it.

Syntax is checked by the maintained `email-validator` package (no DNS look-up: imports run
offline and must not depend on a resolver). Addresses are ASCII (internationalised domains
are stored in their IDNA ASCII form; a non-ASCII local part is refused, as our sender does not
offer SMTPUTF8), and a lead is identified by its trimmed, lower-cased address.

Speed: a full validation costs ~25 µs (mostly its Unicode checks of the domain), which would
slow a large import by a third or more. Nearly every real address is plain ASCII, so for a
dot-atom local part on a lower-case letters-digits-hyphens domain the few checks email-validator
makes for exactly that shape are made here, with its own patterns and lists; anything else
(Unicode, punycode, quotes, odd lengths, every error) goes to `validate_email`, which also words
every refusal. `tests/unit/test_emails.py` checks the two paths agree on random input.
"""

from __future__ import annotations

from functools import lru_cache

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    DNS_LABEL_LENGTH_LIMIT,
    DOMAIN_NAME_REGEX,
    DOT_ATOM_TEXT,
    DOT_ATOM_TEXT_HOSTNAME,
    EMAIL_MAX_LENGTH,
)


class InvalidEmail(ValueError):
    """Not an email address we can send to; `reason` says why in one sentence."""

    def __init__(self, email: str, reason: str) -> None:
        self.email = email
        self.reason = reason
        super().__init__(f"not an email address: {email!r} ({reason})")


def _reason(exc: EmailNotValidError) -> str:
    """email-validator's sentence, in our message style (lower-case start, no full stop)."""
    text = str(exc).rstrip(".")
    return text[:1].lower() + text[1:]


def normalize_email(text: str) -> str:
    """The lead key for `text` (trimmed, lower-cased, ASCII), or `InvalidEmail` saying what is
    wrong with it."""
    email = text.strip().lower()
    local, _, domain = email.rpartition("@")
    if len(email) <= EMAIL_MAX_LENGTH and DOT_ATOM_TEXT.match(local) and _plain_domain(domain):
        return email
    try:
        info = validate_email(email, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(text, _reason(exc)) from None
    return info.ascii_email.lower()


@lru_cache(maxsize=1 << 16)  # lead lists repeat domains: most look-ups are hits
def _plain_domain(domain: str) -> bool:
    """Whether email-validator accepts `domain` as it is, for a lower-case ASCII domain of
    letters, digits and single hyphens (its checks for that shape: hostname syntax, a dot, a
    TLD ending in a letter, label length, no special-use name). False sends the address to
    email-validator itself, so False is always safe."""
    if "--" in domain or "." not in domain:  # punycode and R-LDH labels: email-validator
        return False
    if not (DOT_ATOM_TEXT_HOSTNAME.match(domain) and DOMAIN_NAME_REGEX.search(domain)):
        return False
    if any(len(label) > DNS_LABEL_LENGTH_LIMIT for label in domain.split(".")):
        return False
    return not any(domain == d or domain.endswith("." + d) for d in SPECIAL_USE_DOMAIN_NAMES)


def is_email(text: str) -> bool:
    """Whether `normalize_email` accepts `text`."""
    try:
        normalize_email(text)
    except InvalidEmail:
        return False
    return True
