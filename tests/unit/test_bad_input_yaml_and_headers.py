"""Hostile campaign files and hostile lead names: a YAML alias bomb or a file that is not
UTF-8 is one clear problem with its file:line, and no generated header line exceeds RFC
5322's 998 characters however long or exotic a lead's name is."""

from __future__ import annotations

import shutil
import time
import tracemalloc
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser
from pathlib import Path

import pytest

from nurture.core.config import Sender
from nurture.core.messages import Message, to_eml
from nurture.services.validation import validate

REPO = Path(__file__).resolve().parents[2]
# 8 anchors of 8 aliases each: ~420 bytes that expand to 8^8 (16.7 million) values
BOMB = "a: &a [" + ",".join(['"lol"'] * 8) + "]\n" + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 8)}]\n" for p, c in zip("abcdefgh", "bcdefghi",
                                                                 strict=True))


@pytest.fixture
def campaigns(tmp_path: Path) -> Path:
    return Path(shutil.copytree(REPO / "campaigns", tmp_path / "campaigns"))


def test_an_alias_bomb_is_refused_quickly_with_its_line(campaigns):
    assert len(BOMB) < 500
    (campaigns / "bomb.yaml").write_text(BOMB, encoding="utf-8")
    tracemalloc.start()
    started = time.perf_counter()
    config, problems = validate(campaigns, REPO / "templates")
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert config is None and elapsed < 5 and peak < 100 * 2**20, (elapsed, peak)
    [bomb] = [p for p in problems if p.path.endswith("bomb.yaml")]
    assert bomb.line > 1 and "expands to more than" in bomb.message, bomb


def test_a_self_referencing_alias_is_refused(campaigns):
    (campaigns / "loop.yaml").write_text("a: &a [*a]\n", encoding="utf-8")
    (campaigns / "loop2.yaml").write_text("x: &x\n  y: *x\n", encoding="utf-8")
    _, problems = validate(campaigns, REPO / "templates")
    assert {Path(p.path).name for p in problems} >= {"loop.yaml", "loop2.yaml"}


def test_a_campaign_file_that_is_not_utf8_is_one_clear_problem(campaigns):
    (campaigns / "latin1.yaml").write_bytes(b"name: x\ndescription: caf\xe9\n")
    (campaigns / "nul.yaml").write_bytes(b"name: x\x00\n")
    _, problems = validate(campaigns, REPO / "templates")
    [latin] = [p for p in problems if p.path.endswith("latin1.yaml")]
    assert (latin.line, latin.message) == (2, "not UTF-8 (byte 0xe9 on line 2); save the "
                                              "file as UTF-8")
    assert str(latin).endswith("latin1.yaml:2: (file): " + latin.message)
    [nul] = [p for p in problems if p.path.endswith("nul.yaml")]
    assert nul.line == 1 and "not allowed" in nul.message


SENDER = Sender(from_email="hello@acme.example", from_name=" ".join(["Acme Ünternehmen"] * 20),
                postal_address="1 Main St, Springfield")
HOSTILE_NAMES = ["Ü" * 400, "😀" * 400, "A" * 400, ("Ann " * 100).strip(),
                 'O"Brien, "Jr." <x@y.example>' * 10, "é" * 1 + " " + "x" * 398,
                 "\u202eevil\u202c " * 40]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_no_header_line_exceeds_998_characters(name):
    msg = Message(touch_id=1, to_email="lead@example.com", to_name=name, sender=SENDER,
                  subject="Über " * 300, html="<p>hi</p>", text="hi",
                  unsubscribe_url="https://acme.example/u/tok", send_at=datetime.now(UTC),
                  campaign="inbound-saas", step="welcome")
    raw = to_eml(msg)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert max(len(line) for line in head.split(b"\r\n")) <= 78 + len("Subject: ")
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed["To"].addresses[0].addr_spec == "lead@example.com"
    assert parsed["Subject"] == msg.subject
    # RFC 2047 decoding (the stdlib's newer address parser puts spaces between adjacent
    # encoded-words of a display name, which the RFC says to ignore)
    legacy = BytesParser(policy=policy.compat32).parsebytes(raw)
    assert str(make_header(decode_header(legacy["To"]))) == f"{name} <lead@example.com>"
    assert str(make_header(decode_header(legacy["From"]))) == (
        f"{SENDER.from_name} <hello@acme.example>")
