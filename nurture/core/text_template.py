"""Text templates derived once from HTML templates, so the plain-text part of an email costs a
second small render instead of an HTML-to-text conversion per message.

`html_to_text(render(html_template))` is applied to the *template* instead of each rendered
message: the template's literal HTML goes through the same token rules as `html_to_text` (tags
dropped, block tags to line breaks, `<li>` to "- ", links to `text (url)`, entities
unescaped, head/title/style/script skipped) while every `{{ }}` and `{% %}` stays what it was.
This works on the parsed template (Jinja's own AST, whitespace control already applied), so
blocks, `extends` and `include` keep working. Lead data needs nothing: the HTML environment
escapes a value and `html_to_text` unescapes it again, so the raw value in a non-escaping
environment is the same text.

Anything the token rules cannot decide from the template alone — a tag or entity that lead
data could complete, control flow inside a tag, macros, `|safe` and the other filters that
behave differently with autoescape off — raises `Underivable`, and the renderer keeps
`html_to_text` for that template. A value that turns out to be HTML (`Markup`) at render time
raises `MarkupValue`, and the renderer falls back for that one message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from html import unescape
from html.entities import html5
from typing import Any

from jinja2 import nodes

from nurture.core.html_text import BLOCK, HREF, SKIP, SPACES, TOKEN
from nurture.core.sandbox import Sandbox

HREF_FILTER = "nurture_derived_href"
_EXPR, _STMT = "\x00", "\x01"  # stand-ins for a `{{ }}` and a `{% %}` in a run of literal HTML
_MARKERS = re.compile("[\x00\x01]")
# `&name` at the end of literal text, where what follows could make it an entity:
# `html.unescape` would decode across the join if some entity name goes on from `name`.
_ENTITY_TAIL = re.compile(r"&([^\t\n\f <&;]*)$")
_ENTITY_PREFIXES = frozenset(k[:i] for k in html5 for i in range(len(k)))
# Filters whose result differs once autoescape is off, or that differ between two renders.
_UNSAFE_FILTERS = frozenset({"safe", "e", "escape", "forceescape", "urlize", "xmlattr",
                             "tojson", "random"})
_FILTER_BY_NAME = frozenset({"map", "select", "reject", "selectattr", "rejectattr"})
_UNSAFE_GLOBALS = frozenset({"lipsum"})
_KEPT_STATEMENTS = (nodes.Assign, nodes.Extends)
_AROUND_BREAK = re.compile(r"[ \t]*\n[ \t]*")
_BLANK_LINES = re.compile(r"\n{3,}")


class Underivable(Exception):
    """This template's text part cannot be derived; use `html_to_text` per message."""


class MarkupValue(Exception):
    """A value rendered into the text is already HTML: this message needs `html_to_text`."""


def refuse_markup(value: Any) -> Any:
    """`finalize` for text templates: an HTML-safe value would be output raw in the HTML part
    (tags and all), which the derived text cannot know about."""
    if type(value) is not str and hasattr(value, "__html__"):
        raise MarkupValue
    return value


def derived_href(literals: tuple, *values: Any) -> str:
    """` (url)` for a link whose href holds `{{ }}`. `html_to_text` unescapes an href twice
    (once as the href, once with the whole text); in the HTML part a value is escaped, so
    the first unescape gives the value back. `literals` holds the literal pieces unescaped
    once and twice, and whether the second unescape can go piece by piece (no entity left
    open at the end of a piece): then only a value holding `&` needs the slow way."""
    once, twice, piecewise = literals
    shown = [str(refuse_markup(v)) for v in values]
    href = _interleave(once, shown)
    if not href:
        return ""
    if piecewise and not any("&" in v for v in shown):
        return f" ({_interleave(twice, shown)})"
    return f" ({unescape(href)})"


def _interleave(literals: tuple[str, ...], values: list[str]) -> str:
    parts = [literals[0]]
    for value, literal in zip(values, literals[1:], strict=True):
        parts += (value, literal)
    return "".join(parts)


def open_entity(text: str) -> bool:
    """Whether text that ends `text` could become part of an entity with what follows."""
    found = _ENTITY_TAIL.search(text)
    return found is not None and (found.group(1)[:1] == "#" or found.group(1) in _ENTITY_PREFIXES)


def pretidy(text: str) -> str:
    """Literal text as `tidy` would leave it whatever comes before and after it: spaces and
    tabs collapsed, none next to a line break, and no more than one blank line. Smaller
    output, so the `tidy` each message still needs has less to do."""
    return _BLANK_LINES.sub("\n\n", _AROUND_BREAK.sub("\n", SPACES.sub(" ", text)))


@dataclass(frozen=True)
class _State:
    """Where the token walk is: inside how many skipped elements, and the href of an open
    link (a literal string, or the parts for `derived_href`)."""

    skip: int = 0
    href: str | tuple | None = None


_NEUTRAL = _State()


class _Walk:
    """Converts one body (a list of statements) from HTML to text, token by token."""

    def __init__(self, deriver: _Deriver, state: _State) -> None:
        self.deriver = deriver
        self.state = state
        self.out: list[nodes.Node] = []
        self.text: list[str] = []  # literal text not yet unescaped and emitted
        self.dynamic: list[nodes.Node] = []  # the `{{ }}` and `{% %}` of the run, in order

    def body(self, body: list[nodes.Node]) -> list[nodes.Node]:
        run: list[str] = []
        for node in body:
            if isinstance(node, nodes.Output):
                for child in node.nodes:
                    if isinstance(child, nodes.TemplateData):
                        if _MARKERS.search(child.data):
                            raise Underivable("control characters in the template")
                        run.append(child.data)
                    else:
                        run.append(_EXPR)
                        self.dynamic.append(child)
            else:
                run.append(_STMT)
                self.dynamic.append(node)
        self._tokens("".join(run))
        self._flush()
        return self.out

    def _tokens(self, html: str) -> None:
        pending = iter(self.dynamic)
        for match in TOKEN.finditer(html):
            closing, tag, attrs, data = match.groups()
            if data:
                self._data(data, html, match.end(), pending)
            elif not tag:  # a comment or a doctype
                if _MARKERS.search(match.group()):
                    raise Underivable("{{ }} or {% %} inside an HTML comment")
            else:
                self._tag(closing, tag.lower(), attrs, pending)

    def _data(self, data: str, html: str, end: int, pending) -> None:
        if data == "<" and html[end:end + 2].lstrip("/")[:1] in (_EXPR, _STMT):
            raise Underivable("a tag name could come from {{ }} or {% %}")
        for i, piece in enumerate(_MARKERS.split(data)):
            if i:
                node = next(pending)
                if isinstance(node, nodes.Stmt):
                    self._statement(node)
                elif self.state.skip:
                    self.out.append(nodes.ExprStmt(node))
                else:
                    self._flush()
                    self.out.append(nodes.Output([node]))
            if piece and not self.state.skip:
                self.text.append(piece)

    def _tag(self, closing: str, tag: str, attrs: str, pending) -> None:
        if _STMT in attrs or attrs.startswith(_EXPR):
            raise Underivable(f"{{% %}} inside <{tag}>, or a tag name from {{{{ }}}}")
        values = [next(pending) for _ in range(attrs.count(_EXPR))]
        if tag in SKIP:
            skip = max(0, self.state.skip - 1) if closing else self.state.skip + 1
            self.state = replace(self.state, skip=skip)
        elif tag == "a":
            values = self._link(closing, attrs, values)
        elif tag in BLOCK:
            self.text.append("\n- " if tag == "li" and not closing else "\n")
        self.out.extend(nodes.ExprStmt(v) for v in values)  # evaluated, not shown

    def _link(self, closing: str, attrs: str, values: list) -> list:
        """Opening `<a>`: remember its href. Closing: emit ` (href)`. Returns the values of
        the tag that are not shown (evaluated anyway, as the HTML part does)."""
        if closing:
            href = self.state.href
            self.state = replace(self.state, href=None)
            if isinstance(href, tuple):
                self._flush()
                self.out.append(nodes.Output([nodes.Filter(href[0], HREF_FILTER,
                                                           list(href[1:]), [], None, None)]))
            elif href:
                self.text.append(f" ({href})")
            return values
        found = HREF.search(attrs)
        if found is None or _EXPR in attrs[:found.start()] or (
                found.group(3) is not None and _EXPR in found.group(3)):
            if values:
                raise Underivable("{{ }} where lead data could change a link's href")
            self.state = replace(self.state, href=None)
            return values
        raw = next(g for g in found.groups() if g is not None)
        shown = raw.count(_EXPR)
        if not shown:
            self.state = replace(self.state, href=unescape(raw))
            return values
        literal = raw.split(_EXPR)
        if any(open_entity(text) for text in literal[:-1]):
            raise Underivable("an entity lead data could complete, in an href")
        once = tuple(unescape(text) for text in literal)
        piecewise = not any(open_entity(text) for text in once[:-1])
        parts = (nodes.Const((once, tuple(unescape(t) for t in once), piecewise)),
                 *values[:shown])
        self.state = replace(self.state, href=tuple(parts))
        return values[shown:]

    def _statement(self, node: nodes.Stmt) -> None:
        self._flush()
        self.out.append(self.deriver.statement(node, self.state))

    def _flush(self) -> None:
        """Emit the pending literal text, unescaped as `html_to_text` unescapes it: in one
        piece, which is exact unless an entity is still open where a value follows."""
        if not self.text:
            return
        text = "".join(self.text)
        self.text = []
        if "&" in text and open_entity(text):
            raise Underivable("an entity lead data could complete")
        self.out.append(nodes.Output([nodes.TemplateData(pretidy(unescape(text)))]))


class _Deriver:
    """Converts statements, checking the walk's state is the same on every path through
    them (a branch must not open a link or a skipped element it does not close)."""

    def statement(self, node: nodes.Stmt, state: _State) -> nodes.Stmt:
        if isinstance(node, _KEPT_STATEMENTS):
            return node
        if isinstance(node, nodes.If):
            node.body = self.branch(node.body, state)
            node.elif_ = [self.statement(n, state) for n in node.elif_]
            node.else_ = self.branch(node.else_, state)
            return node
        if isinstance(node, nodes.For) and not node.recursive:
            node.body = self.branch(node.body, state)
            node.else_ = self.branch(node.else_, state)
            return node
        if isinstance(node, nodes.With):
            node.body = self.branch(node.body, state)
            return node
        return self._neutral(node, state)

    def _neutral(self, node: nodes.Stmt, state: _State) -> nodes.Stmt:
        """Blocks and includes are converted on their own, from the top of a document."""
        if not isinstance(node, nodes.Block | nodes.Include):
            raise Underivable(f"{type(node).__name__} statements are not derived")
        if state != _NEUTRAL:
            raise Underivable(f"{type(node).__name__} inside a link or a skipped element")
        if isinstance(node, nodes.Block):
            node.body = self.branch(node.body, state)
        return node

    def branch(self, body: list[nodes.Node], state: _State) -> list[nodes.Node]:
        walk = _Walk(self, state)
        out = walk.body(body)
        if walk.state != state:
            raise Underivable("a branch opens or closes a link or a skipped element")
        return out


def _check_expressions(node: nodes.Node) -> None:
    for flt in node.find_all(nodes.Filter):
        if flt.name in _UNSAFE_FILTERS:
            raise Underivable(f"the |{flt.name} filter")
        if flt.name in _FILTER_BY_NAME and flt.args and not (
                isinstance(flt.args[0], nodes.Const)
                and flt.args[0].value not in _UNSAFE_FILTERS):
            raise Underivable(f"|{flt.name} with a filter that may not be derived")
    for name in node.find_all(nodes.Name):
        if name.name in _UNSAFE_GLOBALS:
            raise Underivable(f"{name.name}()")


def derive(template: nodes.Template) -> nodes.Template:
    """The text version of a parsed HTML template (changed in place and returned)."""
    _check_expressions(template)
    template.body = _Deriver().branch(template.body, _NEUTRAL)
    template.set_lineno(1)
    return template


class TextEnvironment(Sandbox):
    """Serves, for every template name, the text template derived from the HTML one (so
    `extends`, `include` and blocks resolve to derived templates too). Same loader and
    whitespace rules as the HTML environment, no autoescape, strict undefined."""

    def __init__(self, html_env: Sandbox) -> None:
        super().__init__(loader=html_env.loader, autoescape=False,
                         undefined=html_env.undefined, trim_blocks=html_env.trim_blocks,
                         lstrip_blocks=html_env.lstrip_blocks, finalize=refuse_markup,
                         auto_reload=html_env.auto_reload)
        self._autoescaped: Callable[[str | None], bool] = html_env.autoescape  # type: ignore
        self.filters[HREF_FILTER] = derived_href

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        if not (callable(self._autoescaped) and self._autoescaped(name)):
            raise Underivable(f"{name} is not autoescaped")
        template = derive(super()._parse(source, name, filename))
        template.set_environment(self)
        return template


# Lead data a derived text template is checked against before it is trusted: markup, entities
# (complete, bare and half), quotes, line and paragraph separators, spacing, non-ASCII, long.
ADVERSARIAL_VALUES = (
    "<b>bold</b> & <i>co</i>", "&amp; &lt;x&gt; &#39; &copy &", "&", "amp;", "#39;", "&#",
    "\"double\" 'single' `back`", "line one\nline two\r\nline three\u2028four\x0bfive",
    "  lots   of\t\tspace  ", "Zoë Ünïcødé — 日本語 🚀\xa0nbsp", "-->", "<!-- x",
    '<a href="https://evil.example/?a=1&b=2">click</a>', "x" * 3000 + " y&amp;z" * 200, "",
)
ADVERSARIAL_URL = "https://u.example/unsub?a=1&b=<2>&amp;c='3'\"&copy"


def adversarial_contexts(context: dict[str, Any], sample: dict[str, Any]):
    """`context` again with `sample` and with each adversarial value in every string field of
    the lead (and a hostile unsubscribe URL every other time)."""
    yield context | {"lead": sample}
    lead = context["lead"]
    for i, value in enumerate(ADVERSARIAL_VALUES):
        for base in (lead, sample):
            changed = {k: value if isinstance(v, str) else v for k, v in base.items()}
            url = ADVERSARIAL_URL if i % 2 else context["unsubscribe_url"]
            yield context | {"lead": changed, "unsubscribe_url": url}
    yield context | {"lead": {k: None if isinstance(v, str) else v for k, v in lead.items()}}


def mismatch(html_template, text_template, contexts, to_text: Callable[[str], str],
             tidy: Callable[[str], str]) -> str | None:
    """Why the derived text template cannot be trusted (None if it can): the first context
    whose derived text differs from `to_text` of the HTML, or fails where the HTML renders."""
    for ctx in contexts:
        try:
            html = html_template.render(ctx)
        except Exception:  # this lead cannot be rendered at all: nothing to compare
            continue
        try:
            text = tidy(text_template.render(ctx))
        except MarkupValue:  # HTML in the lead data: such a message falls back on its own
            continue
        except Exception as exc:
            return f"derived text failed: {exc!r}"
        if text != to_text(html):
            return f"derived text differs from html_to_text for lead {ctx['lead']!r:.80}"
    return None
