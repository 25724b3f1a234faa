"""The outbox as a viewer (like Mailpit, but static files): open `outbox/index.html`.

`index.html` lists the newest messages as plain HTML (works without JavaScript) and loads
`index-data.js`, the manifest of *every* message, to filter by campaign, step, recipient and
subject and page through all of them. Each message gets a `touch-N.html` view beside its
`.eml`: the HTML part in a sandboxed frame at desktop and mobile widths, the text part and the
headers. Everything opens from disk (file://): no server, no network.
"""

from __future__ import annotations

import json
import os
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

from nurture.views.html_kit import esc, iframe, page, write

STATIC_ROWS = 200  # rows in the HTML itself; the script pages through the rest
SHOW_HEADERS = ("From", "To", "Reply-To", "Subject", "Date", "Message-ID", "List-Unsubscribe",
                "List-Unsubscribe-Post", "X-Nurture-Touch-Id", "X-Nurture-Campaign",
                "X-Nurture-Step")


def read_manifest(directory: Path) -> list[dict]:
    """Every message in `index.jsonl`, newest first, one row per touch (the last write
    wins); unreadable lines are skipped (a crash can leave a torn last line)."""
    rows: dict[int, dict] = {}
    manifest = directory / "index.jsonl"
    if manifest.exists():
        with open(manifest, encoding="utf-8") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                    rows[int(row["touch_id"])] = row
                except (ValueError, KeyError, TypeError):
                    continue
    out = list(rows.values())
    out.sort(key=lambda r: (r.get("written_at") or "", r.get("touch_id", 0)), reverse=True)
    return out


def view_name(file: str) -> str:
    return file[:-4] + ".html" if file.endswith(".eml") else file + ".html"


def _part(msg: EmailMessage, kind: str) -> str:
    body = msg.get_body((kind,))
    return body.get_content() if body is not None else ""


def write_view(directory: Path, row: dict) -> bool:
    """The message's view page; False when its `.eml` is missing."""
    eml = directory / row["file"]
    view = directory / view_name(row["file"])
    if not eml.exists():
        return False
    if view.exists() and view.stat().st_mtime >= eml.stat().st_mtime:
        return True
    msg = BytesParser(policy=default_policy).parsebytes(eml.read_bytes())
    headers = "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(msg[k]))}</dd>" for k in SHOW_HEADERS
                      if msg[k] is not None)
    html_part, text_part = _part(msg, "html"), _part(msg, "plain")
    up = "../" * row["file"].count("/")
    body = (f'<div class="muted">{esc(row.get("campaign", ""))} › {esc(row.get("step", ""))}'
            f'{" › variant " + esc(row["variant"]) if row.get("variant") else ""}'
            f' · <a href="{esc(Path(row["file"]).name)}" download>download .eml</a></div>'
            f'<div class="card"><div class="muted">Subject</div>'
            f'<div style="font-size:1.15rem;font-weight:600" id="subject">'
            f'{esc(str(msg["Subject"] or ""))}</div></div>'
            f'<div class="card"><h3>Headers</h3><dl class="headers">{headers}</dl></div>'
            f'<h3>HTML</h3><div class="frames">'
            f'<div class="frame"><div class="label">desktop (800 px)</div>'
            f"{iframe(html_part, 800, 900, 'message, desktop width')}</div>"
            f'<div class="frame"><div class="label">mobile (375 px)</div>'
            f"{iframe(html_part, 375, 900, 'message, mobile width')}</div></div>"
            f'<h3>Text part</h3><pre class="text">{esc(text_part)}</pre>')
    write(view, page(f"Message to {row.get('to', '')}", body, back=f"{up}index.html"))
    return True


_SCRIPT = """
<script>
(function () {
  var data = window.OUTBOX || [];
  var body = document.getElementById('rows');
  var shown = document.getElementById('shown');
  var more = document.getElementById('more');
  var f = {campaign: document.getElementById('f-campaign'), step: document.getElementById('f-step'),
           to: document.getElementById('f-to'), q: document.getElementById('f-q')};
  var limit = PAGE, matches = data;
  function options(sel, values) {
    values.sort().forEach(function (v) {
      var o = document.createElement('option'); o.value = v; o.textContent = v; sel.appendChild(o);
    });
  }
  function uniq(key) {
    var seen = {}; data.forEach(function (r) { if (r[key]) seen[r[key]] = 1; });
    return Object.keys(seen);
  }
  options(f.campaign, uniq('campaign')); options(f.step, uniq('step'));
  function cell(tr, text, href) {
    var td = document.createElement('td');
    if (href) { var a = document.createElement('a'); a.href = href; a.textContent = text;
                td.appendChild(a); } else { td.textContent = text; }
    tr.appendChild(td);
  }
  function draw() {
    var c = f.campaign.value, s = f.step.value, to = f.to.value.trim().toLowerCase(),
        q = f.q.value.trim().toLowerCase();
    matches = data.filter(function (r) {
      return (!c || r.campaign === c) && (!s || r.step === s) &&
             (!to || (r.to || '').toLowerCase().indexOf(to) >= 0) &&
             (!q || (r.subject || '').toLowerCase().indexOf(q) >= 0);
    });
    body.textContent = '';
    matches.slice(0, limit).forEach(function (r) {
      var tr = document.createElement('tr');
      cell(tr, (r.send_at || '').slice(0, 16).replace('T', ' '));
      cell(tr, r.to); cell(tr, r.campaign);
      cell(tr, r.step + (r.variant ? ' / ' + r.variant : ''));
      cell(tr, r.subject, r.view);
      body.appendChild(tr);
    });
    shown.textContent = Math.min(limit, matches.length) + ' of ' + matches.length +
      ' matching message(s) shown (' + data.length + ' in the outbox)';
    more.hidden = matches.length <= limit;
  }
  ['change', 'input'].forEach(function (ev) {
    Object.keys(f).forEach(function (k) {
      f[k].addEventListener(ev, function () { limit = PAGE; draw(); });
    });
  });
  more.addEventListener('click', function () { limit += PAGE; draw(); });
  if (data.length) { draw(); }
})();
</script>
"""


def write_viewer(directory: Path) -> Path:
    directory = Path(directory)
    rows = read_manifest(directory)
    data = []
    for r in rows:
        ok = write_view(directory, r)
        data.append({"touch_id": r.get("touch_id"), "to": r.get("to"),
                     "subject": r.get("subject"), "campaign": r.get("campaign"),
                     "step": r.get("step"), "variant": r.get("variant"),
                     "send_at": r.get("send_at"),
                     "view": view_name(r["file"]) if ok else r["file"], "file": r["file"]})
    js = "window.OUTBOX = " + json.dumps(data, ensure_ascii=True).replace("<", "\\u003c") + ";\n"
    write(directory / "index-data.js", js)
    static = "".join(
        f"<tr><td>{esc((r.get('send_at') or '')[:16].replace('T', ' '))}</td>"
        f"<td>{esc(r.get('to') or '')}</td><td>{esc(r.get('campaign') or '')}</td>"
        f"<td>{esc(r.get('step') or '')}"
        f"{' / ' + esc(r['variant']) if r.get('variant') else ''}</td>"
        f'<td><a href="{esc(r["view"])}">{esc(r.get("subject") or "")}</a> '
        f'<a class="muted" href="{esc(r["file"])}" title="the raw message">.eml</a></td></tr>'
        for r in data[:STATIC_ROWS])
    body = (f"<p>{len(data)} message(s) written by the <code>outbox</code> transport, newest "
            "first. Click a subject to see the message as a recipient would; each also opens "
            "as a <code>.eml</code> file in any mail client.</p>"
            '<div class="filters" role="search">'
            '<select id="f-campaign" aria-label="campaign"><option value="">all campaigns'
            '</option></select>'
            '<select id="f-step" aria-label="step"><option value="">all steps</option></select>'
            '<input id="f-to" type="search" placeholder="recipient" aria-label="recipient">'
            '<input id="f-q" type="search" placeholder="subject contains" aria-label="subject">'
            "</div>"
            f'<p class="muted" id="shown">{min(len(data), STATIC_ROWS)} of {len(data)} shown'
            "</p>"
            '<div class="table-wrap"><table><thead><tr><th>Send at (UTC)</th><th>To</th>'
            "<th>Campaign</th><th>Step</th><th>Subject</th></tr></thead>"
            f'<tbody id="rows">{static}</tbody></table></div>'
            '<p><button id="more" type="button" hidden>show more</button></p>')
    script = ('<script src="index-data.js"></script>'
              + _SCRIPT.replace("PAGE", str(STATIC_ROWS)))
    path = directory / "index.html"
    write(path, page("Outbox", body, script=script))
    os.utime(path)
    return path
