"""The one email-address rule: imports, sales feedback and the campaign config all use it.

Syntax is checked by the maintained `email-validator` package (no DNS look-up: imports run
offline and must not depend on a resolver). Addresses are ASCII (internationalised domains
are stored in their IDNA ASCII form; a non-ASCII local part is refused, as our sender does not
offer SMTPUTF8), and a lead is identified by its trimmed, lower-cased address.

Speed: a full validation costs ~25 µs, which would slow a large import by about a third. Lead
lists repeat domains heavily, so a domain email-validator accepted once (unchanged, in
ASCII) is remembered, and an address on a remembered domain whose local part is a plain
dot-atom (email-validator's own `DOT_ATOM_TEXT`) within its length limit is accepted without
calling it again — exactly the checks it would make for such an address. Everything else
goes through `validate_email`.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import DOT_ATOM_TEXT, EMAIL_MAX_LENGTH

# domains email-validator accepted unchanged; cleared when full (bounded memory)
_PLAIN_DOMAINS: set[str] = set()
_MAX_DOMAINS = 100_000


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
    if domain in _PLAIN_DOMAINS and len(email) <= EMAIL_MAX_LENGTH \
            and DOT_ATOM_TEXT.match(local):
        return email
    try:
        info = validate_email(email, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(text, _reason(exc)) from None
    if info.ascii_domain == domain:
        if len(_PLAIN_DOMAINS) >= _MAX_DOMAINS:
            _PLAIN_DOMAINS.clear()
        _PLAIN_DOMAINS.add(domain)
    return info.ascii_email.lower()


def is_email(text: str) -> bool:
    """Whether `normalize_email` accepts `text`."""
    try:
        normalize_email(text)
    except InvalidEmail:
        return False
    return True
