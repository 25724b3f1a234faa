"""Hostile import files on SQLite and PostgreSQL: every bad row is quarantined with a reason,
every good row of the same batch lands, and a lead created by another connection between
the import's look-up and its insert never aborts a batch."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, insert, select

from nurture.services.ingest import ImportFileError, import_activities_jsonl, import_leads_csv
from nurture.store import tables as t
from nurture.store.db import make_engine
from nurture.store.limits import max_length

NOW = datetime.now(UTC)
HEADER = "email,first_name,company,company_size,created_at,timezone,plan\n"


def good(n: int) -> str:
    return f"good{n}@example.com,Good,Acme,10,2024-01-02T03:04:05Z,UTC,pro\n"


def count(store, table=t.leads) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def quarantined(path) -> list[dict[str, str]]:
    old = csv.field_size_limit(1 << 24)  # a too-large field is kept whole for fixing
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            return list(csv.DictReader(fh))
    finally:
        csv.field_size_limit(old)


def write(path, text: str | bytes):
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


BAD_LEAD_ROWS = {
    # reason code: the row
    "field_too_large": "big@example.com,Big,Acme,10,,UTC," + "x" * (200 * 1024) + "\n",
    "bad_company_size": "huge@example.com,H,Acme,1e400,,UTC,\n",
    "bad_company_size#2": "huge2@example.com,H,Acme,99999999999999999999,,UTC,\n",
    "bad_company_size#3": "neg@example.com,N,Acme,-5,,UTC,\n",
    "bad_company_size#4": "nan@example.com,N,Acme,nan,,UTC,\n",
    "bad_company_size#5": "inf@example.com,N,Acme,inf,,UTC,\n",
    "bad_created_at": "y1@example.com,Y,Acme,,0001-01-01T00:00:00+01:00,UTC,\n",
    "bad_created_at#2": "y9@example.com,Y,Acme,,9999-12-31T23:59:59-05:00,UTC,\n",
    "bad_created_at#3": "y99@example.com,Y,Acme,,9999-12-31T00:00:00Z,UTC,\n",
    "bad_created_at#4": "y2099@example.com,Y,Acme,,2099-01-01T00:00:00Z,UTC,\n",
    "too_long": "long@example.com," + "L" * (max_length(t.leads.c.first_name) + 1)
                + ",Acme,,,UTC,\n",
    "too_long#2": "longc@example.com,C," + "C" * (max_length(t.leads.c.company) + 1)
                  + ",,,UTC,\n",
    "nul_character": "nul@example.com,Nu\x00l,Acme,,,UTC,\n",
    "bad_timezone": "tz@example.com,T,Acme,,,Europe/" + "x" * 100 + ",\n",
}


@pytest.mark.parametrize("code", list(BAD_LEAD_ROWS))
def test_a_hostile_csv_row_is_quarantined_and_its_batch_lands(store, tmp_path, code):
    path = write(tmp_path / "l.csv", HEADER + good(1) + BAD_LEAD_ROWS[code] + good(2))
    report = import_leads_csv(store, path)
    assert (report.read, report.inserted, report.quarantined) == (3, 2, 1)
    assert report.reasons == {code.split("#")[0]: 1}
    assert count(store) == 2
    [q] = quarantined(report.quarantine_file)
    assert q["line"] == "3" and q["reason"]


def test_non_utf8_bytes_quarantine_only_their_row_and_keep_the_bytes(store, tmp_path):
    path = write(tmp_path / "l.csv", HEADER.encode() + good(1).encode()
                 + b"latin@example.com,Jos\xe9,Acme,,,UTC,\n" + good(2).encode())
    report = import_leads_csv(store, path)
    assert (report.inserted, report.quarantined, report.reasons) == (2, 1, {"not_utf8": 1})
    assert b"Jos\xe9" in (tmp_path / "l.quarantine.csv").read_bytes()  # as it was


def test_a_300_character_first_name_costs_one_row_of_2500(store, tmp_path):
    rows = [f"lead{i}@example.com,{'F' * 300 if i == 1234 else 'Ann'},Acme,10,,UTC,\n"
            for i in range(2500)]
    report = import_leads_csv(store, write(tmp_path / "l.csv", HEADER + "".join(rows)))
    assert (report.read, report.inserted, report.quarantined) == (2500, 2499, 1)
    assert count(store) == 2499


def test_an_unterminated_quote_is_quarantined_by_line_and_later_rows_land(store, tmp_path):
    text = HEADER + good(1) + 'oops@example.com,"Never closed,Acme,,,UTC,\n' + good(2) + good(3)
    report = import_leads_csv(store, write(tmp_path / "l.csv", text))
    assert (report.inserted, report.quarantined) == (3, 1)
    [q] = quarantined(report.quarantine_file)
    assert q["line"] == "3" and "line 3" in q["reason"] and "never closed" in q["reason"]
    assert count(store) == 3


def test_a_quoted_multiline_value_is_still_one_row(store, tmp_path):
    text = HEADER + 'multi@example.com,"Two\nlines",Acme,,,UTC,\n' + good(1)
    report = import_leads_csv(store, write(tmp_path / "l.csv", text))
    assert (report.inserted, report.quarantined) == (2, 0)


def test_header_names_are_trimmed_and_duplicates_refuse_the_file(store, tmp_path):
    report = import_leads_csv(store, write(tmp_path / "l.csv", " email , first_name \n"
                                           "a@example.com,Ann\n"))
    assert (report.inserted, report.quarantined) == (1, 0)
    with store.engine.connect() as conn:
        assert conn.execute(select(t.leads.c.first_name)).scalar_one() == "Ann"
    with pytest.raises(ImportFileError, match="'email' appears twice"):
        import_leads_csv(store, write(tmp_path / "d.csv", "email,name,email\n"
                                      "b@example.com,B,c@example.com\n"))
    assert count(store) == 1


def test_a_batch_the_database_refuses_is_retried_row_by_row(store, db_url):
    refused = []
    rows = [{"email": "ok1@example.com", "attributes": {}},
            # a naive time: refused while binding, on every backend
            {"email": "bad@example.com", "attributes": {}, "created_at": datetime(2024, 1, 1)},
            {"email": "ok2@example.com", "attributes": {}}]
    if db_url.startswith("postgresql"):  # the server's own refusal (SQLite has no lengths)
        rows.append({"email": "long@example.com", "first_name": "x" * 300, "attributes": {}})
    assert store.upsert_leads(rows, on_error=lambda r, e: refused.append((r, e))) == (2, 0)
    assert sorted(r["email"] for r, _ in refused) == sorted(
        r["email"] for r in rows if "ok" not in r["email"])
    assert count(store) == 2
    acts = [{"id": "a1", "email": "ok1@example.com", "type": "page_view", "occurred_at": NOW},
            {"id": "a2", "email": "ok1@example.com", "type": "page_view",
             "occurred_at": datetime(2024, 1, 1)},
            {"id": "a3", "email": "new@example.com", "type": "page_view", "occurred_at": NOW}]
    refused.clear()
    counts = store.insert_activities(acts, on_error=lambda r, e: refused.append((r, e)))
    assert counts == {"inserted": 2, "duplicates": 0, "leads_created": 1}
    assert [r["id"] for r, _ in refused] == ["a2"]


def _create_behind_the_back(store, db_url, emails):
    """Before the store's first INSERT INTO leads, another connection creates `emails`.

    PostgreSQL only: on SQLite every writer takes the write lock when its transaction begins
    (BEGIN IMMEDIATE), so no other connection can create a lead inside the import's
    transaction — the race cannot happen there, and the hook would wait on the lock."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): no concurrent creator can "
                    "interleave inside the import's transaction")
    other = make_engine(db_url)
    fired = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _race(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO LEADS") and not fired:
            fired.append(statement)
            with other.begin() as oc:
                oc.execute(insert(t.leads), [{
                    "email": e, "attributes": {"by": "api"}, "created_at": NOW,
                    "updated_at": NOW, "lifecycle_stage": "new", "stage_entered_at": NOW,
                    "recycle_count": 0} for e in emails])

    return other, fired, _race


def test_a_lead_created_concurrently_is_updated_not_a_failed_batch(store, db_url, tmp_path):
    other, fired, hook = _create_behind_the_back(store, db_url, ["race@example.com"])
    try:
        path = write(tmp_path / "l.csv", HEADER + good(1)
                     + "race@example.com,Race,Acme,5,,UTC,gold\n" + good(2))
        report = import_leads_csv(store, path)
    finally:
        event.remove(store.engine, "before_cursor_execute", hook)
        other.dispose()
    assert fired
    assert (report.inserted, report.updated, report.quarantined) == (2, 1, 0)
    with store.engine.connect() as conn:
        row = conn.execute(select(t.leads).where(t.leads.c.email == "race@example.com")).one()
    assert (row.first_name, row.attributes, row.version) == (
        "Race", {"by": "api", "plan": "gold"}, 1)


def test_activities_for_a_lead_created_concurrently_use_that_lead(store, db_url):
    other, fired, hook = _create_behind_the_back(store, db_url, ["race@example.com"])
    try:
        counts = store.insert_activities([
            {"id": "r1", "email": "race@example.com", "type": "page_view", "occurred_at": NOW},
            {"id": "r2", "email": "fresh@example.com", "type": "page_view",
             "occurred_at": NOW}])
    finally:
        event.remove(store.engine, "before_cursor_execute", hook)
        other.dispose()
    assert fired
    assert counts == {"inserted": 2, "duplicates": 0, "leads_created": 1}
    assert count(store) == 2


def test_every_lead_update_bumps_version_and_activity_flags_the_lead(store):
    store.upsert_leads([{"email": "v@example.com", "attributes": {}}])
    with store.engine.begin() as conn:
        conn.execute(t.leads.update().values(next_check_at=NOW, activity_pending=False))
    store.upsert_leads([{"email": "v@example.com", "title": "CTO", "attributes": {}}])
    store.insert_activities([{"id": "v1", "email": "v@example.com", "type": "page_view",
                              "occurred_at": NOW}])
    store.insert_activities([{"id": "v1", "email": "v@example.com", "type": "page_view",
                              "occurred_at": NOW}])  # a duplicate changes nothing
    with store.engine.connect() as conn:
        row = conn.execute(select(t.leads)).one()
    assert (row.version, row.title, row.activity_pending, row.next_check_at) == (
        2, "CTO", True, None)


def test_suppress_refuses_an_address_it_cannot_store_and_fits_the_rest(store):
    with pytest.raises(ValueError, match="cannot suppress"):
        store.suppress("x" * 400 + "@example.com", "bounce")
    assert store.suppress("s@example.com", "bounce" * 20, "src\x00" * 50, "detail\x00") is True
    with store.engine.connect() as conn:
        row = conn.execute(select(t.suppressions)).one()
    assert "\x00" not in row.detail and len(row.reason) <= max_length(t.suppressions.c.reason)


# -- activities (JSONL) -----------------------------------------------------------------
def act(i: str, **kw) -> dict:
    return {"id": i, "email": "a@example.com", "type": "page_view",
            "occurred_at": "2024-05-01T10:00:00Z"} | kw


BAD_ACTIVITY_LINES = {
    "not_utf8": b'{"id": "u", "email": "a@example.com", "type": "page_view", '
                b'"occurred_at": "2024-05-01T10:00:00Z", "properties": {"n": "Jos\xe9"}}',
    "invalid_json": b"[" * 60_000 + b"]" * 60_000,  # RecursionError in json, under 128 KiB
    "line_too_large#2": b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
    "bad_properties": b'{"id": "n", "email": "a@example.com", "type": "page_view", '
                      b'"occurred_at": "2024-05-01T10:00:00Z", "properties": {"x": NaN}}',
    "bad_properties#2": b'{"id": "n", "email": "a@example.com", "type": "page_view", '
                        b'"occurred_at": "2024-05-01T10:00:00Z", "properties": {"x": 1e400}}',
    "bad_properties#3": json.dumps(act("z", properties={"x": "a\x00b"})).encode(),
    "bad_properties#4": json.dumps(act("d", properties={"a": {"b": {"c": [[[[[[[[[[[[[[[[[[[[[
        [[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}})).encode(),
    "future": json.dumps(act("f", occurred_at="2099-01-01T00:00:00Z")).encode(),
    "bad_occurred_at#2": json.dumps(act("f", occurred_at="9999-12-31T23:59:59-05:00")).encode(),
    "bad_occurred_at": json.dumps(act("o", occurred_at="0001-01-01T00:00:00+01:00")).encode(),
    "bad_id": json.dumps(act(True)).encode(),
    "bad_id#2": json.dumps(act("i" * (max_length(t.activities.c.external_id) + 1))).encode(),
    "bad_id#3": json.dumps(act("nul\x00id")).encode(),
    "invalid_type": json.dumps(act("t", type="page\x00view")).encode(),
    "invalid_email": json.dumps(act("e", email=["a@example.com"])).encode(),
    "line_too_large": json.dumps(act("big", properties={"x": "y" * 200_000})).encode(),
}


@pytest.mark.parametrize("code", list(BAD_ACTIVITY_LINES))
def test_a_hostile_jsonl_line_is_quarantined_and_the_file_goes_on(store, tmp_path, code):
    good1, good2 = json.dumps(act("g1")).encode(), json.dumps(act("g2")).encode()
    path = write(tmp_path / "a.jsonl", b"\n".join([good1, BAD_ACTIVITY_LINES[code], good2])
                 + b"\n")
    report = import_activities_jsonl(store, path)
    assert (report.read, report.inserted, report.quarantined) == (3, 2, 1)
    assert report.reasons == {code.split("#")[0]: 1}
    assert count(store, t.activities) == 2
    q = json.loads((tmp_path / "a.quarantine.jsonl").read_text(encoding="utf-8",
                                                               errors="surrogateescape"))
    assert q["line"] == 2 and q["reason"]


def test_ids_sharing_their_first_200_characters_are_not_one_activity(store, tmp_path):
    base = "x" * max_length(t.activities.c.external_id)
    lines = [json.dumps(act(base)), json.dumps(act(base + "-second"))]
    report = import_activities_jsonl(store, write(tmp_path / "a.jsonl", "\n".join(lines)))
    assert (report.inserted, report.duplicates, report.quarantined) == (1, 0, 1)
    with store.engine.connect() as conn:
        assert conn.execute(select(t.activities.c.external_id)).scalars().all() == [base]
