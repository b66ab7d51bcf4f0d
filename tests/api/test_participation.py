"""Citizen participation over real HTTP against the demo city: dataset requests and their
support (once per signed cookie), reports on a dataset or a feature, triage by publishers
(who may do what), the protections (length limits, honeypot, per-address submission limit,
escaping, private e-mails), the reports map layer, the feeds, and the open-report counts.
A report never changes published data."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from babel.messages.extract import extract_from_dir
from publishing_support import bearer, new_key
from serving import served

from api import i18n
from catalog.database import libpq_dsn
from catalog.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HTML = {"Accept": "text/html,application/xhtml+xml"}
DATASET = "bus-stops"
ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(scope="module")
def demo(demo_loaded: dict) -> dict:
    return demo_loaded


@pytest.fixture(scope="module")
def org(demo: dict, live_server: str) -> str:
    return str(httpx.get(f"{live_server}/datasets/{DATASET}").json()["organisation"]["slug"])


@pytest.fixture(scope="module")
def keys(database_url: str, org: str) -> dict[str, dict[str, str]]:
    return {"admin": bearer(new_key(database_url, "admin")),
            "publisher": bearer(new_key(database_url, "publisher", org)),
            "other": bearer(new_key(database_url, "publisher", f"not-{org}"))}


@pytest.fixture(scope="module")
def feature(demo: dict, live_server: str) -> dict[str, Any]:
    page = httpx.get(f"{live_server}/collections/{DATASET}/items", params={"limit": 1}).json()
    return dict(page["features"][0])


def report(http: httpx.Client, **extra: Any) -> httpx.Response:
    body = {"category": "wrong_location", "comment": "this bus stop was moved", **extra}
    return http.post(f"/datasets/{DATASET}/reports", json=body)


def open_count(http: httpx.Client) -> int:
    return int(http.get(f"/datasets/{DATASET}").json()["open_reports"])


# ---- requests -----------------------------------------------------------------------------------

def test_a_request_is_public_but_its_email_is_only_for_publishers(
        http: httpx.Client, keys: dict[str, dict[str, str]]) -> None:
    area = {"type": "Polygon", "coordinates": [[[51.3, 35.6], [51.5, 35.6], [51.5, 35.8],
                                                 [51.3, 35.8], [51.3, 35.6]]]}
    r = http.post("/requests", json={"title": "Street trees", "description": "Every street "
                                     "tree with its species", "theme": "infrastructure",
                                     "area": area, "email": "citizen@example.org"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert r.headers["location"].endswith(f"/requests/{made['id']}")
    assert made["status"] == "new" and made["supporters"] == 0
    assert made["area"]["type"] == "Polygon"
    assert "citizen@example.org" not in r.text
    shown = http.get(f"/requests/{made['id']}")
    assert shown.status_code == 200 and "citizen@example.org" not in shown.text
    listed = http.get("/requests", params={"status": "new", "limit": 100}).json()
    assert made["id"] in [i["id"] for i in listed["requests"]]
    assert "citizen@example.org" not in http.get(f"/requests/{made['id']}", headers=HTML).text

    assert http.get(f"/requests/{made['id']}/contact").status_code == 401
    contact = http.get(f"/requests/{made['id']}/contact", headers=keys["other"])
    assert contact.status_code == 200 and contact.json()["email"] == "citizen@example.org"


def test_a_publisher_answers_a_request_and_the_answer_is_shown(
        http: httpx.Client, keys: dict[str, dict[str, str]]) -> None:
    rid = http.post("/requests", json={"title": "Noise levels", "description": "Measured noise",
                                       "theme": "traffic"}).json()["id"]
    patch = {"status": "accepted", "public_answer": "We will publish it in spring."}
    assert http.patch(f"/requests/{rid}", json=patch).status_code == 401
    bad = http.patch(f"/requests/{rid}", json={"status": "maybe"}, headers=keys["publisher"])
    assert bad.status_code == 400
    r = http.patch(f"/requests/{rid}", json=patch, headers=keys["publisher"])
    assert r.status_code == 200, r.text
    got = http.get(f"/requests/{rid}").json()
    assert got["status"] == "accepted" and got["public_answer"] == patch["public_answer"]
    assert got["answered"] is not None
    assert patch["public_answer"] in http.get(f"/requests/{rid}", headers=HTML).text
    assert http.patch("/requests/999999999", json=patch,
                      headers=keys["admin"]).status_code == 404


def test_support_counts_once_per_signed_cookie(live_server: str, http: httpx.Client) -> None:
    rid = http.post("/requests", json={"title": "Bike lanes", "description": "All bike lanes",
                                       "theme": "traffic"}).json()["id"]
    with httpx.Client(base_url=live_server) as alice, httpx.Client(base_url=live_server) as bob:
        first = alice.post(f"/requests/{rid}/support")
        assert first.status_code == 200 and first.json() == {
            "request": rid, "supported": True, "added": True, "supporters": 1}
        assert "shahr_supporter" in alice.cookies
        again = alice.post(f"/requests/{rid}/support").json()
        assert again["added"] is False and again["supporters"] == 1
        assert bob.post(f"/requests/{rid}/support").json()["supporters"] == 2
        # an altered cookie is no cookie: it counts as a new person with a new cookie
        ident = str(alice.cookies["shahr_supporter"]).split(".")[0]
        with httpx.Client(base_url=live_server,
                          cookies={"shahr_supporter": f"{ident}.{'0' * 64}"}) as forger:
            r = forger.post(f"/requests/{rid}/support")
            assert r.json()["supporters"] == 3
            assert r.cookies["shahr_supporter"].split(".")[0] != ident
    assert http.get(f"/requests/{rid}").json()["supporters"] == 3
    assert http.post("/requests/999999999/support").status_code == 404


# ---- reports ------------------------------------------------------------------------------------

def test_a_feature_report_is_listed_mapped_counted_and_changes_no_data(
        http: httpx.Client, feature: dict[str, Any]) -> None:
    before_count = open_count(http)
    before_feature = http.get(f"/collections/{DATASET}/items/{feature['id']}").json()
    r = report(http, feature_id=feature["id"], email="rider@example.org",
               location={"type": "Point", "coordinates": [51.41, 35.71]})
    assert r.status_code == 201, r.text
    made = r.json()
    assert "rider@example.org" not in r.text
    assert made["feature_id"] == str(feature["id"]) and made["status"] == "new"
    assert made["version"] == http.get(f"/datasets/{DATASET}").json()["version"]
    assert made["location"]["coordinates"] == [51.41, 35.71]

    listed = http.get(f"/datasets/{DATASET}/reports", params={"feature": feature["id"]}).json()
    assert made["id"] in [i["id"] for i in listed["reports"]]
    layer = http.get(f"/datasets/{DATASET}/reports.geojson")
    assert layer.headers["content-type"].startswith("application/geo+json")
    placed = {f["id"]: f for f in layer.json()["features"]}
    assert placed[made["id"]]["geometry"]["coordinates"] == [51.41, 35.71]
    assert placed[made["id"]]["properties"]["corrected_location"] is True

    # without a pin, the report sits on the feature
    plain = report(http, feature_id=feature["id"], category="wrong_value").json()
    placed = {f["id"]: f for f in http.get(f"/datasets/{DATASET}/reports.geojson").json()
              ["features"]}
    assert placed[plain["id"]]["properties"]["corrected_location"] is False
    if feature["geometry"]["type"] == "Point":
        assert placed[plain["id"]]["geometry"]["coordinates"] == pytest.approx(
            feature["geometry"]["coordinates"], abs=1e-6)

    assert open_count(http) == before_count + 2
    found = http.get("/datasets", params={"limit": 100}).json()
    counted = {d["slug"]: d["open_reports"] for d in found["datasets"]}
    assert all(isinstance(v, int) for v in counted.values())
    assert counted[DATASET] == before_count + 2
    assert http.get(f"/collections/{DATASET}/items/{feature['id']}").json() == before_feature


def test_triage_of_a_report_who_may_do_what(
        http: httpx.Client, keys: dict[str, dict[str, str]], org: str) -> None:
    rid = report(http, email="someone@example.org").json()["id"]
    patch = {"status": "in_progress", "public_answer": "Checking on site."}
    assert http.patch(f"/reports/{rid}", json=patch).status_code == 401
    assert http.patch(f"/reports/{rid}", json=patch,
                      headers={"Authorization": "Bearer shahr_nope_nope"}).status_code == 401
    refused = http.patch(f"/reports/{rid}", json=patch, headers=keys["other"])
    assert refused.status_code == 403 and org in refused.json()["detail"]
    assert http.get(f"/reports/{rid}").json()["status"] == "new"  # unchanged
    assert http.get(f"/reports/{rid}/contact", headers=keys["other"]).status_code == 403
    assert http.get(f"/reports/{rid}/contact").status_code == 401

    ok = http.patch(f"/reports/{rid}", json=patch, headers=keys["publisher"])
    assert ok.status_code == 200 and ok.json()["status"] == "in_progress"
    contact = http.get(f"/reports/{rid}/contact", headers=keys["publisher"])
    assert contact.json()["email"] == "someone@example.org"
    assert contact.headers["cache-control"] == "no-store"

    version = http.get(f"/datasets/{DATASET}").json()["version"]
    wrong = http.patch(f"/reports/{rid}", json={"fixed_version": version + 100},
                       headers=keys["admin"])
    assert wrong.status_code == 400 and wrong.json()["parameter"] == "fixed_version"
    before = open_count(http)
    done = http.patch(f"/reports/{rid}", json={"status": "done", "fixed_version": version},
                      headers=keys["admin"])
    assert done.status_code == 200, done.text
    assert done.json()["fixed_version"] == version
    assert done.json()["public_answer"] == "Checking on site."
    assert open_count(http) == before - 1
    assert http.patch("/reports/999999999", json=patch,
                      headers=keys["admin"]).status_code == 404


def test_triage_is_in_the_audit_log(http: httpx.Client, keys: dict[str, dict[str, str]],
                                    database_url: str) -> None:
    rid = report(http).json()["id"]
    http.patch(f"/reports/{rid}", json={"status": "accepted"}, headers=keys["other"])
    http.patch(f"/reports/{rid}", json={"status": "accepted"}, headers=keys["publisher"])
    with psycopg.connect(libpq_dsn(database_url)) as conn:
        rows = conn.execute("SELECT status FROM catalog.audit_log WHERE target = %s "
                            "ORDER BY id", [f"report:{rid}"]).fetchall()
    assert [r[0] for r in rows] == [403, 200]


@pytest.mark.parametrize(("body", "field"), [
    ({"category": "ugly", "comment": "xxx"}, "category"),
    ({"category": "outdated", "comment": "x" * 2001}, "comment"),
    ({"category": "outdated", "comment": "  "}, "comment"),
    ({"category": "outdated", "comment": "ok ok", "feature_id": 10**15}, "feature_id"),
    ({"category": "outdated", "comment": "ok ok", "location": {"type": "Point",
                                                               "coordinates": [500, 1]}},
     "location"),
    ({"category": "outdated", "comment": "ok ok", "email": "not an address"}, "email"),
    ({"category": "outdated", "comment": "ok ok", "colour": "red"}, "colour"),
])
def test_bad_reports_are_refused_with_the_field_named(
        http: httpx.Client, demo: dict, body: dict[str, Any], field: str) -> None:
    r = http.post(f"/datasets/{DATASET}/reports", json=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["parameter"] == field


@pytest.mark.parametrize(("body", "field"), [
    ({"title": "x" * 201, "description": "abc", "theme": "traffic"}, "title"),
    ({"title": "Trees", "description": "abc", "theme": "weather"}, "theme"),
    ({"title": "Trees", "description": "abc", "theme": "traffic",
      "area": {"type": "Point", "coordinates": [51, 35]}}, "area"),
    ({"title": "Trees", "description": "abc", "theme": "traffic",
      "area": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},
     "area"),
])
def test_bad_requests_are_refused_with_the_field_named(
        http: httpx.Client, body: dict[str, Any], field: str) -> None:
    r = http.post("/requests", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["parameter"] == field


def test_other_bad_input(http: httpx.Client, demo: dict) -> None:
    assert http.post("/requests", content=b"{not json",
                     headers={"Content-Type": "application/json"}).status_code == 400
    assert http.post("/requests", json=[1, 2]).status_code == 400
    assert report(http, feature_id=2**61).status_code == 400
    missing = http.post("/datasets/no-such-dataset/reports", json={"category": "outdated",
                                                                    "comment": "abc"})
    assert missing.status_code == 404
    assert http.get("/reports/999999999").status_code == 404
    assert http.get("/requests", params={"status": "open"}).status_code == 400
    assert http.get("/datasets/no-such-dataset/feed.atom").status_code == 404


def test_the_honeypot_refuses_spam_and_stores_nothing(http: httpx.Client, demo: dict) -> None:
    before = http.get(f"/datasets/{DATASET}/reports").json()["numberMatched"]
    r = report(http, website="http://spam.example")
    assert r.status_code == 400 and r.json()["parameter"] == "website"
    form = http.post(f"/datasets/{DATASET}/reports", data={
        "category": "outdated", "comment": "buy cheap", "website": "http://spam.example"})
    assert form.status_code == 400
    assert http.get(f"/datasets/{DATASET}/reports").json()["numberMatched"] == before
    assert http.post("/requests", json={"title": "Spam", "description": "spam",
                                        "theme": "traffic", "website": "x"}).status_code == 400


def test_submissions_are_limited_per_address(settings: Settings, demo: dict) -> None:
    from api.app import create_app

    strict = settings.model_copy(update={"submissions_per_minute": 3,
                                         "rate_limit_exempt": []})
    with served(create_app(strict)) as base, httpx.Client(base_url=base) as client:
        codes = [client.post(f"/datasets/{DATASET}/reports",
                             json={"category": "outdated", "comment": f"n {i}"}).status_code
                 for i in range(4)]
        assert codes == [201, 201, 201, 429]
        refused = client.post("/requests", json={"title": "More", "description": "more",
                                                  "theme": "traffic"})
        assert refused.status_code == 429
        assert refused.json()["limit_per_minute"] == 3
        assert "a minute" in refused.json()["detail"]
        # reading is not a submission
        assert client.get(f"/datasets/{DATASET}/reports").status_code == 200


def test_a_form_post_gets_a_redirect_to_what_it_made(http: httpx.Client,
                                                     feature: dict[str, Any]) -> None:
    r = http.post(f"/datasets/{DATASET}/reports", data={
        "category": "wrong_value", "comment": "not residential", "feature_id": feature["id"],
        "lon": "51.4", "lat": "35.7", "website": ""})
    assert r.status_code == 303, r.text
    made = http.get(r.headers["location"]).json()
    assert made["location"]["coordinates"] == [51.4, 35.7]
    bad = http.post(f"/datasets/{DATASET}/reports", data={"category": "wrong_value",
                                                          "comment": "x"}, headers=HTML)
    assert bad.status_code == 400 and "text/html" in bad.headers["content-type"]
    assert "comment" in bad.text
    req = http.post("/requests", data={"title": "Parks", "description": "All parks",
                                       "theme": "land-use"})
    assert req.status_code == 303 and "/requests/" in req.headers["location"]


# ---- escaping and feeds -------------------------------------------------------------------------

SCRIPT = '<script>alert("x")</script> & <b>bold</b>'


def test_what_citizens_write_is_escaped_everywhere(http: httpx.Client,
                                                   keys: dict[str, dict[str, str]]) -> None:
    made = report(http, comment=SCRIPT).json()
    assert made["comment"] == SCRIPT  # stored as written, escaped where shown
    http.patch(f"/reports/{made['id']}", json={"public_answer": "<img src=x onerror=1>"},
               headers=keys["publisher"])
    for page in (http.get(f"/reports/{made['id']}", headers=HTML).text,
                 http.get(f"/datasets/{DATASET}/reports", headers=HTML).text):
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(" in page and "&lt;img src=x onerror=1&gt;" in page
    atom = http.get(f"/datasets/{DATASET}/feed.atom")
    assert "<script>" not in atom.text
    root = ET.fromstring(atom.content)
    contents = [e.findtext(f"{ATOM}content") for e in root.iter(f"{ATOM}entry")]
    assert any(c and c.startswith(SCRIPT) for c in contents)
    rid = http.post("/requests", json={"title": "<script>x</script>", "description": "abc",
                                       "theme": "traffic"}).json()["id"]
    assert "<script>x</script>" not in http.get(f"/requests/{rid}", headers=HTML).text
    assert "<script>x</script>" not in http.get("/requests", headers=HTML).text


def test_feeds_follow_reports_and_answers(http: httpx.Client,
                                          keys: dict[str, dict[str, str]]) -> None:
    rid = report(http, comment="The timetable is outdated").json()["id"]
    http.patch(f"/reports/{rid}", json={"status": "done", "public_answer": "Updated."},
               headers=keys["publisher"])
    r = http.get(f"/datasets/{DATASET}/feed.json")
    assert r.headers["content-type"].startswith("application/feed+json")
    feed = r.json()
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["feed_url"].endswith(f"/datasets/{DATASET}/feed.json")
    item = next(i for i in feed["items"] if i["url"].endswith(f"/reports/{rid}"))
    assert "The timetable is outdated" in item["content_text"]
    assert "Updated." in item["content_text"] and "done" in item["tags"]
    assert item["date_modified"] >= item["date_published"]
    atom = http.get(f"/datasets/{DATASET}/feed.atom")
    assert atom.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(atom.content)
    assert root.tag == f"{ATOM}feed" and root.findtext(f"{ATOM}updated")
    ids = [e.findtext(f"{ATOM}id") for e in root.iter(f"{ATOM}entry")]
    assert any(i and i.endswith(f"/reports/{rid}") for i in ids)


# ---- the database's side ------------------------------------------------------------------------

def test_the_public_role_cannot_read_the_emails(http: httpx.Client, database_url: str,
                                                settings: Settings) -> None:
    report(http, email="private@example.org")
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        conn.execute(f"SET ROLE {settings.reader_role}")
        assert conn.execute("SELECT count(*) FROM catalog.reports").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT email FROM catalog.contacts")
        conn.execute("RESET ROLE")
        emails = [r[0] for r in conn.execute("SELECT email FROM catalog.contacts")]
        assert "private@example.org" in emails
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "'catalog' AND table_name IN ('reports', 'dataset_requests')")}
        assert not any("mail" in c for c in columns)


def test_the_signing_secret_is_generated_once_and_reused(tmp_path: Path) -> None:
    from api.participation_guard import secret_key

    s = Settings(data_dir=tmp_path)
    first = secret_key(s)
    assert len(first) == 64 and secret_key(s) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert secret_key(Settings(data_dir=tmp_path, secret_key="given")) == b"given"


def test_participation_pages_are_translated() -> None:
    """Every message in the participation templates has a Persian translation."""
    found = {m if isinstance(m, str) else m[0] for _f, _l, m, _c, _x in extract_from_dir(
        str(ROOT / "api" / "templates" / "participation"),
        [("**.html", "jinja2")], {"**.html": {"extensions": "jinja2.ext.i18n"}})}
    assert len(found) > 40
    with i18n.po_path("fa").open("rb") as f:
        from babel.messages.pofile import read_po

        fa = read_po(f, locale="fa")
    have = {m.id: m.string for m in fa if m.id and isinstance(m.id, str)}
    missing = sorted(m for m in found if not have.get(m))
    assert not missing, missing


def test_the_migration_goes_down_and_up_again(server_url: str) -> None:
    from alembic import command
    from sqlalchemy.engine import make_url

    from catalog.bootstrap import create_database, drop_database, ensure_postgis
    from catalog.database import get_engine
    from catalog.migrate import alembic_config, upgrade

    name = f"shahr_test_participation_{os.getpid()}"
    create_database(server_url, name)
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    tables = ("dataset_requests", "request_supports", "reports", "contacts")

    def present() -> set[str]:
        with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
            return {r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                "'catalog' AND table_name = ANY(%s)", [list(tables)])}

    try:
        ensure_postgis(url)
        upgrade(url)
        assert present() == set(tables)
        command.downgrade(alembic_config(url), "0003")
        assert present() == set()
        upgrade(url)
        assert present() == set(tables)
    finally:
        get_engine(url).dispose()
        drop_database(server_url, name)
