"""Languages of the web pages: the Babel catalogues are complete and current, the language is
chosen by ?lang= (remembered), the cookie, Accept-Language (by quality) and the default, in
that order; Persian pages show Persian digits and Jalali dates; dataset text is escaped."""

from __future__ import annotations

import json
import re
import time
from datetime import date
from pathlib import Path

import httpx
import pytest
import yaml
from babel.messages.catalog import Catalog
from babel.messages.checkers import python_format
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from starlette.requests import Request

from api import i18n
from catalog.jalali import to_jalali_string
from catalog.settings import Settings
from etl.manifest import load_manifest
from etl.runner import run_job

ROOT = Path(__file__).resolve().parents[2]
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
PERSIAN_DIGIT = re.compile("[۰-۹]")


def lang_of(page: str) -> str:
    m = re.search(r'<html lang="(\w+)" dir="(\w+)">', page)
    assert m, page[:200]
    assert m[2] == ("rtl" if m[1] == "fa" else "ltr")
    return m[1]


# --- the catalogues ------------------------------------------------------------------------


def catalogue(lang: str) -> Catalog:
    with i18n.po_path(lang).open("rb") as f:
        return read_po(f, locale=lang, abort_invalid=True)


def test_every_message_has_a_persian_translation() -> None:
    fa = catalogue("fa")
    ids = [m.id for m in fa if m.id]
    assert len(ids) > 150
    untranslated = [m.id for m in fa if m.id and not (
        m.string if isinstance(m.string, str) else all(m.string))]
    assert not untranslated, f"untranslated in fa: {untranslated}"
    fuzzy = [m.id for m in fa if m.id and m.fuzzy]
    assert not fuzzy, f"fuzzy (needs review) in fa: {fuzzy}"
    for m in fa:  # placeholders (%(n)s ...) kept as they are
        if m.id and m.python_format:
            python_format(fa, m)
    persian = [m for m in fa if m.id and re.search("[\u0600-\u06ff]", str(m.string))]
    assert len(persian) > 0.8 * len(ids)  # written in Persian, not copied from English


def test_english_catalogue_parses_and_holds_the_same_messages() -> None:
    assert {m.id for m in catalogue("en") if m.id} == {m.id for m in catalogue("fa") if m.id}


def test_catalogues_hold_every_message_in_the_templates_and_code() -> None:
    """What `pybabel extract -F babel.cfg` finds now is in the catalogues: a new or changed
    string in a template fails here until `pybabel update` and a translation are done."""
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    found = {msg for _file, _line, msg, _comments, _context in
             extract_from_dir(str(ROOT), method_map, options_map)}
    found = {m if isinstance(m, str) else m[0] for m in found}
    assert len(found) > 150
    have = {m.id if isinstance(m.id, str) else m.id[0] for m in catalogue("fa") if m.id}
    assert not found - have, f"run pybabel update (docs/web.md): {sorted(found - have)}"


def test_translations_are_used() -> None:
    assert i18n.translations("fa").gettext("Datasets") == "مجموعه‌داده‌ها"
    assert i18n.translations("en").gettext("Datasets") == "Datasets"
    with i18n.language("fa"):
        assert i18n.gettext("Skip to content") == "پرش به محتوا"


# --- numbers and dates ---------------------------------------------------------------------


def test_persian_digits_grouping_and_jalali_dates() -> None:
    assert i18n.digits("v2 of 1500", "fa") == "v۲ of ۱۵۰۰"
    assert i18n.digits(2024, "en") == "2024"
    assert i18n.number(1234567, "fa") == "۱٬۲۳۴٬۵۶۷"
    assert i18n.number(1234567, "en") == "1,234,567"
    assert i18n.number(12.5, "fa") == "۱۲٫۵"
    assert i18n.show_date("2023-08-03", "fa") == "۱۴۰۲/۰۵/۱۲"
    assert i18n.show_date("2024-03-20T10:15:00+00:00", "fa", time=True) == \
        "۱۴۰۳/۰۱/۰۱ ۱۰:۱۵"
    assert i18n.show_date("2023-08-03", "en") == "Aug 3, 2023"
    assert i18n.show_date(None, "fa") == ""


# --- which language ------------------------------------------------------------------------


def request_with(query: str = "", cookie: str | None = None,
                 accept_language: str | None = None) -> Request:
    headers = []
    if cookie is not None:
        headers.append((b"cookie", f"{i18n.COOKIE}={cookie}".encode()))
    if accept_language is not None:
        headers.append((b"accept-language", accept_language.encode()))
    return Request({"type": "http", "method": "GET", "path": "/", "query_string":
                    query.encode(), "headers": headers})


@pytest.mark.parametrize(("header", "expected"), [
    ("fa-IR,fa;q=0.9,en;q=0.8", ["fa", "en"]),
    ("en;q=0.5, fa;q=0.9", ["fa", "en"]),
    ("de-DE, en-GB;q=0.1", ["en"]),
    ("en-US,en;q=0.9,fa;q=0", ["en"]),  # q=0 refuses
    ("*;q=0.5, en", ["en", "*"]),
    ("fa;q=x", []),  # a broken quality counts as refused
    ("", []),
])
def test_accept_language_by_quality(header: str, expected: list[str]) -> None:
    assert i18n.accept_language(header) == expected


def test_negotiation_order() -> None:
    n = i18n.negotiate
    assert n(request_with()) == i18n.Choice("fa", remember=False)  # the default
    assert n(request_with(), default="en").lang == "en"
    assert n(request_with(accept_language="en-GB,en;q=0.9")).lang == "en"
    assert n(request_with(accept_language="de,fr;q=0.8")).lang == "fa"
    assert n(request_with(accept_language="*"), default="en").lang == "en"
    assert n(request_with(cookie="en", accept_language="fa")).lang == "en"  # cookie first
    assert n(request_with(cookie="xx", accept_language="en")).lang == "en"  # bad cookie
    assert n(request_with("lang=fa", cookie="en", accept_language="en")) == \
        i18n.Choice("fa", remember=True)
    assert n(request_with("lang=EN")).lang == "en"
    with pytest.raises(i18n.UnknownLanguage, match="accepted: fa, en"):
        n(request_with("lang=de"))


# --- over HTTP -----------------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("demo_loaded")


def test_default_is_persian_and_accept_language_chooses(http: httpx.Client) -> None:
    assert lang_of(http.get("/datasets", headers=HTML).text) == "fa"
    r = http.get("/datasets", headers={**HTML, "Accept-Language": "en-GB,en;q=0.9,fa;q=0.5"})
    assert lang_of(r.text) == "en"
    assert r.headers["content-language"] == "en"
    assert "Cookie" in r.headers["vary"] and "Accept-Language" in r.headers["vary"]
    assert "set-cookie" not in r.headers  # only an explicit choice is remembered
    r = http.get("/datasets", headers={**HTML, "Accept-Language": "en;q=0.3, fa;q=0.8"})
    assert lang_of(r.text) == "fa"


def test_lang_parameter_is_remembered_in_a_cookie(live_server: str) -> None:
    with httpx.Client(base_url=live_server, headers={**HTML, "Accept-Language": "fa"}) as c:
        r = c.get("/datasets", params={"lang": "en"})
        assert lang_of(r.text) == "en"
        cookie = r.headers["set-cookie"]
        assert f"{i18n.COOKIE}=en" in cookie and "Path=/" in cookie
        assert "samesite=lax" in cookie.lower() and "Max-Age" in cookie
        # every page after that, whatever the browser's languages, until switched back
        for path in ("/", "/datasets/schools", "/collections", "/collections/schools/items"):
            assert lang_of(c.get(path).text) == "en", path
        assert lang_of(c.get("/collections", params={"lang": "fa"}).text) == "fa"
        assert lang_of(c.get("/datasets").text) == "fa"


def test_switch_link_keeps_the_page_and_its_query(http: httpx.Client) -> None:
    page = http.get("/datasets", params={"q": "school", "theme": "infrastructure",
                                         "lang": "en"}, headers=HTML).text
    href = re.search(r'<a class="lang-switch" href="([^"]+)"', page)[1].replace("&amp;", "&")
    assert "/datasets?" in href and "q=school" in href and "theme=infrastructure" in href
    assert href.count("lang=") == 1 and "lang=fa" in href
    assert lang_of(http.get(href, headers=HTML).text) == "fa"


@pytest.mark.parametrize("lang", ["fa", "en"])
def test_every_page_is_written_in_the_chosen_language(http: httpx.Client, lang: str) -> None:
    fid = http.get("/collections/districts/items", params={"limit": 1}).json()[
        "features"][0]["id"]
    paths = ["/", "/datasets", "/datasets/districts", "/conformance", "/collections",
             "/collections/districts", "/collections/districts/queryables",
             "/collections/districts/items", f"/collections/districts/items/{fid}"]
    skip = {"fa": "پرش به محتوا", "en": "Skip to content"}
    for path in paths:
        r = http.get(path, params={"lang": lang}, headers=HTML)
        assert r.status_code == 200, (path, r.text[:300])
        assert lang_of(r.text) == lang, path
        assert skip[lang] in r.text and 'href="#main"' in r.text, path  # the one layout
        assert "/static/css/shahr.css" in r.text, path


def test_unknown_language_is_a_clear_400(http: httpx.Client) -> None:
    r = http.get("/datasets", params={"lang": "de"}, headers=HTML)
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem")
    body = r.json()
    assert body["parameter"] == "lang" and "fa, en" in body["detail"]


def test_json_stays_as_it_was(http: httpx.Client) -> None:
    r = http.get("/")
    assert r.headers["content-type"].startswith("application/json")
    assert {link["rel"] for link in r.json()["links"]} >= {"conformance", "data", "search"}
    r = http.get("/datasets", params={"lang": "en"})
    assert r.headers["content-type"].startswith("application/json")
    assert "set-cookie" not in r.headers


def test_persian_page_has_persian_digits_and_jalali_dates(http: httpx.Client) -> None:
    d = http.get("/datasets/schools").json()
    fa = http.get("/datasets/schools", params={"lang": "fa"}, headers=HTML).text
    en = http.get("/datasets/schools", params={"lang": "en"}, headers=HTML).text
    assert i18n.number(d["feature_count"], "fa") in fa
    assert f"{d['feature_count']:,}" in en
    modified = date.fromisoformat(d["modified"][:10])
    assert to_jalali_string(modified, "fa") in fa
    assert modified.strftime("%b") in en and PERSIAN_DIGIT.search(to_jalali_string(
        modified, "fa"))
    assert "مجموعه‌داده‌ها" in fa and "Datasets" in en  # the layout's words translated
    # Outside code (URLs, field names, coordinates), a Persian page has no text made of
    # Western digits; the English page has some.
    def digit_texts(page: str) -> list[str]:
        main = page.split("<main", 1)[1].split("</main>", 1)[0]
        main = re.sub(r"<(code|pre|script)\b.*?</\1>", "", main, flags=re.S)
        return re.findall(r">\s*[0-9,.:/ -]*[0-9][0-9,.:/ -]*\s*<", main)
    assert not digit_texts(fa), digit_texts(fa)[:5]
    assert digit_texts(en)


# --- escaping ------------------------------------------------------------------------------

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def evil_dataset(settings: Settings, database_url: str, live_server: str,
                 tmp_path_factory: pytest.TempPathFactory) -> str:
    """A published dataset whose title, description, keyword, field label and values hold
    HTML."""
    folder = tmp_path_factory.mktemp("evil")
    (folder / "evil.geojson").write_text(json.dumps({
        "type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [51.4, 35.7]},
             "properties": {"id": 1, "note": EVIL}}]}), encoding="utf-8")
    manifest = {
        "dataset": {"slug": "evil-html", "title": {"en": f"Evil {EVIL}", "fa": f"بد {EVIL}"},
                    "description": {"en": EVIL, "fa": EVIL}, "theme": "housing",
                    "keywords": [EVIL],
                    "organisation": {"slug": "test-org", "name": {"en": "Test", "fa": "آزمون"}}},
        "source": {"path": "evil.geojson"}, "key": "id",
        "fields": [{"source": "note", "label": {"en": f"Note {EVIL}", "fa": f"یادداشت {EVIL}"}}],
    }
    path = folder / "evil-html.yaml"
    path.write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    result = run_job(load_manifest(path), url=database_url, settings=settings)
    assert result.status == "succeeded", result
    deadline = time.monotonic() + 10  # the API notices a new collection within a second
    while httpx.get(f"{live_server}/collections/evil-html").status_code != 200:
        assert time.monotonic() < deadline, "the new collection was never served"
        time.sleep(0.2)
    return "evil-html"


def test_dataset_text_is_escaped(http: httpx.Client, evil_dataset: str) -> None:
    pages = [http.get(f"/datasets/{evil_dataset}", params={"lang": lang}, headers=HTML).text
             for lang in ("en", "fa")]
    pages.append(http.get("/datasets", params={"q": "evil", "lang": "en"}, headers=HTML).text)
    fid = http.get(f"/collections/{evil_dataset}/items").json()["features"][0]["id"]
    pages.append(http.get(f"/collections/{evil_dataset}/items/{fid}", headers=HTML).text)
    pages.append(http.get(f"/collections/{evil_dataset}/items", headers=HTML).text)
    pages.append(http.get("/datasets", params={"q": EVIL}, headers=HTML).text)
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert" in page or "\\u003cscript\\u003e" in page
