"""The plain-text part from a text template derived once per HTML template: it must be exactly
`html_to_text` of the HTML part, for the shipped templates and any lead data; templates it
cannot be derived for fall back to `html_to_text`, and errors read as before."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from nurture.core.config import Campaign, Step, Track, load_config
from nurture.core.html_text import html_to_text, tidy
from nurture.core.rendering import Renderer, RenderError, sample_lead
from nurture.core.text_template import TextEnvironment, mismatch

REPO = Path(__file__).resolve().parents[2]
UNSUB = "https://nurture.acme.example/unsubscribe/tok123"
EXAMPLES = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# Lead values with what breaks naive conversions: markup, entities whole and half, quotes,
# every kind of line break and space, non-ASCII.
VALUE = st.one_of(
    st.none(), st.integers(-10, 10**6),
    st.text(st.sampled_from(list("ab <>&;#x3c'\"/=-!amplt \t\n\r\x0b\x0c\x1c\x85\u2028\xa0é日🚀")),
            max_size=30),
    st.sampled_from(["&amp;", "&lt;b&gt;", "<b>x</b>", "&copy", "&#", "&", "-->", "<!--",
                     '<a href="x">y</a>', "a  b", "x" * 500]))
FIELDS = ("first_name", "last_name", "company", "title", "industry", "company_size", "email")
LEAD = st.fixed_dictionaries({f: VALUE for f in FIELDS}).map(lambda d: sample_lead() | d)
URL = st.sampled_from([UNSUB, "https://u.example/?a=1&b=2", "https://u.example/&amp;x<y>'\""])


@cache
def shipped():
    config = load_config(REPO / "campaigns")
    jobs = [(c, t, s, v) for c in config.campaigns for t in c.tracks for s in t.steps
            for v in [x.id for x in s.variants or []] or [None]]
    return jobs, Renderer(REPO / "templates"), Renderer(REPO / "templates", derive_text=False)


def test_every_shipped_template_is_derived():
    jobs, fast, _ = shipped()
    for job in jobs:
        fast.render(*job, sample_lead(), UNSUB)
    assert fast.text_fallbacks == {}
    assert len(jobs) == 17


@EXAMPLES
@given(lead=LEAD, url=URL, pick=st.integers(0, 10**6))
def test_derived_text_is_html_to_text_for_every_shipped_step(lead, url, pick):
    jobs, fast, slow = shipped()
    job = jobs[pick % len(jobs)]
    try:
        expected = slow.render(*job, lead, url)
    except RenderError:  # e.g. a subject that renders empty for this lead: same for both
        with pytest.raises(RenderError):
            fast.render(*job, lead, url)
        return
    assert fast.render(*job, lead, url) == expected


@EXAMPLES
@given(lead=LEAD, url=URL, pick=st.integers(0, 10**6))
def test_the_derived_template_itself_gives_html_to_texts_text(lead, url, pick):
    # straight from the derived template, so a per-message fallback cannot hide a difference
    jobs, fast, _ = shipped()
    campaign, track, step, variant = jobs[pick % len(jobs)]
    name = step.content(variant)[1]
    ctx = {"lead": lead, "unsubscribe_url": url,
           **fast._prepare(campaign, track, step, variant).context}
    html = fast.env.get_template(name).render(ctx)
    derived = TextEnvironment(fast.env).get_template(name)
    assert tidy(derived.render(ctx)) == html_to_text(html)


# -- scratch templates -----------------------------------------------------------------------
SENDER = {"from_email": "m@acme.example", "from_name": "Acme & Co",
          "postal_address": "Acme Inc., 1 Main Street, Springfield, USA"}


def scratch(tmp_path: Path, html: str, subject: str = "Hello", text: str | None = None,
            derive: bool = True, **files: str):
    """A renderer over `tmp_path` holding t.html.j2 (and t.txt.j2, and other files)."""
    (tmp_path / "t.html.j2").write_text(html, encoding="utf-8")
    if text is not None:
        (tmp_path / "t.txt.j2").write_text(text, encoding="utf-8")
    for name, source in files.items():
        (tmp_path / name.replace("__", ".")).write_text(source, encoding="utf-8")
    step = Step(id="s", subject=subject, template="t.html.j2")
    track = Track(name="t", stage="research", cadence_days=7, steps=[step])
    campaign = Campaign(name="c", sender=SENDER, tracks=[track])
    renderer = Renderer(tmp_path, derive_text=derive)

    def render(lead: dict | None = None, url: str = UNSUB):
        return renderer.render(campaign, track, step, None, lead or sample_lead(), url)
    return renderer, render


DERIVABLE = {
    "links": '<p>Hi {{ lead.first_name }}</p><a href="https://x.example/?a=1&amp;c={{ '
             'lead.company }}&amp;d={{ campaign.name }}">Go &amp; see</a> <a href=\'{{ '
             'unsubscribe_url }}\'>out</a><a href="">empty</a><a name="n">no href</a>',
    "lists_and_blocks": "<ul>{% for x in [lead.first_name, lead.company] %}<li>{{ x }}</li>"
                        "{% endfor %}</ul><h1>T</h1>a<br>b<hr>{% if lead.title %}<div>"
                        "{{ lead.title }}</div>{% else %}none{% endif %}",
    "skipped": "<head><title>{{ sender.from_name }}</title><style>p {}</style></head>"
               "<body><script>x {{ lead.email }}</script>{{ lead.company }}</body>",
    "entities": "<p>&lt;tag&gt; &amp;amp; &copy; &#169; &#xA9; caf&eacute; {{ lead.last_name }}"
                " &amp;</p><p>&nbsp;{{ lead.first_name }}&nbsp;</p>",
    "attributes_and_comments": '<p class="{{ lead.company }}" title="{{ lead.title }}">'
                               "x</p><!-- a comment --><!DOCTYPE html>",
    "expressions": "<p>{{ lead.first_name ~ ' <b> & ' ~ lead.company }} "
                   "{{ '%s'|format(lead.title) }} {{ lead.company|upper|replace('&', '+') }}"
                   " {{ [lead.first_name, lead.last_name]|join(' & ') }}</p>",
    "whitespace": "  <p>  a  \n\n\n  {{ lead.first_name }}  </p>\n\t\n{%- if 1 -%}\n  x \n"
                  "{%- endif %}\n   {% if 1 %}  y{% endif %}  \n",
    "extends": '{% extends "base.html.j2" %}{% block body %}<p>Hi {{ lead.first_name }}</p>'
               '{% include "inc.html.j2" %}{% endblock %}',
}
UNDERIVABLE = {
    "safe": "<p>{{ lead.first_name|safe }}</p>",
    "escape": "<p>{{ lead.first_name|e }}</p>",
    "tag_from_data": "<{{ lead.first_name }}>x</{{ lead.first_name }}>",
    "entity_from_data": "<p>&{{ lead.first_name }}</p>",
    "statement_in_tag": '<p {% if lead.company %}class="x"{% endif %}>y</p>',
    "data_before_href": '<a title="{{ lead.company }}" href="u">x</a>',
    "value_in_comment": "<p>x</p><!-- {{ lead.first_name }} -->",
    "macro": "{% macro m(x) %}<b>{{ x }}</b>{% endmacro %}<p>{{ m(lead.company) }}</p>",
    "set_block": "{% set x %}<b>{{ lead.company }}</b>{% endset %}{{ x }}",
    "branch_opens_link": '{% if lead.company %}<a href="u">{% endif %}x</a>',
    "autoescape_off": "{% autoescape false %}<p>{{ lead.company }}</p>{% endautoescape %}",
}
LEADS = [sample_lead(), sample_lead() | {"first_name": "<b>bold</b> &amp; co", "company": ""},
         sample_lead() | {"first_name": "a\r\nb\u2028c", "company": "amp;", "title": None},
         sample_lead() | {"first_name": "b", "company": "Smith & Sons <UK>"}]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "base.html.j2").write_text((REPO / "templates" / "base.html.j2").read_text(
        encoding="utf-8"), encoding="utf-8")
    (tmp_path / "inc.html.j2").write_text("<ul><li>{{ lead.company }}</li></ul>",
                                          encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("name", sorted(DERIVABLE))
def test_derivable_templates_are_derived_and_exact(base, name):
    renderer, render = scratch(base, DERIVABLE[name])
    _, slow = scratch(base, DERIVABLE[name], derive=False)
    for lead in LEADS:
        for url in (UNSUB, "https://u.example/?a=1&amp;b=<2>&c"):
            fast = render(lead, url)
            assert fast == slow(lead, url)
            assert fast.text == html_to_text(fast.html)
    assert renderer.text_fallbacks == {}


@pytest.mark.parametrize("name", sorted(UNDERIVABLE))
def test_what_cannot_be_derived_falls_back_to_html_to_text(base, name):
    renderer, render = scratch(base, UNDERIVABLE[name])
    for lead in LEADS:
        r = render(lead)
        assert r.text == html_to_text(r.html)
    assert list(renderer.text_fallbacks) == ["t.html.j2"]


def test_safe_lead_data_is_rendered_as_html_and_its_text_converted(base):
    _, render = scratch(base, "<p>Hi {{ lead.first_name|safe }}</p>")
    assert render(sample_lead() | {"first_name": "<b>Jo</b><br>Lee"}).text == "Hi Jo\nLee\n"


def test_a_value_that_is_already_html_falls_back_for_that_message(base):
    renderer, render = scratch(base, '<p>Hi {{ lead.first_name }}</p><a href="{{ lead.company'
                                     ' }}">x</a>')
    r = render(sample_lead() | {"first_name": Markup("<b>Jo</b><li>x"),
                                "company": Markup("https://a.example/?q=1&amp;r=2")})
    assert r.text == html_to_text(r.html) == "Hi Jo\n- x\nx (https://a.example/?q=1&r=2)\n"
    assert renderer.text_fallbacks == {}  # the template still is derived: only this message


def test_a_hand_written_text_template_still_wins(base):
    renderer, render = scratch(base, "<p>Hi {{ lead.first_name }}</p>",
                               text="Hello {{ lead.first_name }} &amp; <b>\n")
    assert render().text == "Hello Jordan &amp; <b>"


def test_the_safety_net_reports_a_derived_text_that_differs(base):
    renderer, _ = scratch(base, "<p>Hi {{ lead.first_name }}</p>")
    html = renderer.env.get_template("t.html.j2")
    wrong = renderer._text_env.from_string("Hi {{ lead.first_name|upper }}")
    ctx = {"lead": sample_lead()}
    assert "differs" in mismatch(html, wrong, [ctx], html_to_text, tidy)
    right = renderer._text_env.from_string("Hi {{ lead.first_name }}")
    assert mismatch(html, right, [ctx], html_to_text, tidy) is None


# -- errors read as before -------------------------------------------------------------------
@pytest.mark.parametrize(("html", "subject", "text", "message"), [
    ("{% if %}", "Hello", None, "template t.html.j2 (c/s) failed to render: "),
    ("<p>{{ lead.nickname }}</p>", "Hello", None,
     "template t.html.j2 (c/s) failed to render: 'dict object' has no attribute 'nickname'"),
    ("ok", "{{ lead.first_name", None, "subject of c/s failed to render: "),
    ('{% include "missing.html.j2" %}', "Hello", None,
     "template t.html.j2 (c/s) failed to render: 'missing.html.j2' not found"),
    ("ok", "Hello", "{% endif %}", "template t.txt.j2 (c/s) failed to render: "),
    ("ok", "Hello", "{{ lead.nickname }}", "template t.txt.j2 (c/s) failed to render: "),
])
def test_broken_templates_raise_render_error_naming_them(base, html, subject, text, message):
    for derive in (True, False):
        _, render = scratch(base, html, subject=subject, text=text, derive=derive)
        with pytest.raises(RenderError, match="^" + re.escape(message)):
            render()
        with pytest.raises(RenderError, match="^" + re.escape(message)):  # and again
            render()


def test_a_missing_template_raises_render_error(tmp_path):
    _, render = scratch(tmp_path, "x")
    (tmp_path / "t.html.j2").unlink()
    with pytest.raises(RenderError, match=r"^template t\.html\.j2 \(c/s\) failed to render: "):
        render()


# -- tidy ------------------------------------------------------------------------------------
def tidy_reference(raw: str) -> str:
    """`tidy` as it was (one regex per line), the definition the faster one must keep."""
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in raw.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip() + "\n"


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(list("ab \t\n\r\x0b\x0c\x1c\x1d\x85\u2028\u2029\xa0\u3000")),
               max_size=60))
def test_tidy_is_the_per_line_definition(raw):
    assert tidy(raw) == tidy_reference(raw)


# -- the lookup shortcut and the entity check ------------------------------------------------
@pytest.mark.parametrize("attribute", ["first_name", "missing", "items", "get", "__class__",
                                       "_private", "pop", "x", "format"])
def test_sandbox_lookups_give_what_the_plain_sandbox_gives(attribute):
    from types import SimpleNamespace

    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from nurture.core.sandbox import Sandbox
    fast = Sandbox(undefined=StrictUndefined)
    plain = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    objects = [{"first_name": "Jo", "items": 1, "_private": 2, "x": None},
               SimpleNamespace(first_name="Jo", x=[1], _private=3, format="f"), "text"]
    for obj in objects:
        got, want = fast.getattr(obj, attribute), plain.getattr(obj, attribute)
        assert type(got) is type(want)
        if not isinstance(want, StrictUndefined) and not callable(want):
            assert got == want


@pytest.mark.parametrize(("text", "is_open"), [
    ("a&", True), ("a&amp", True), ("a&copy", True), ("a&#", True), ("a&#x3", True),
    ("a&amp;", False), ("a& b", False), ("x&utm_campaign=", False), ("a&zzz", False),
    ("no entity", False)])
def test_open_entities_at_the_end_of_literal_text(text, is_open):
    from nurture.core.text_template import open_entity
    assert open_entity(text) is is_open
