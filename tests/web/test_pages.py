"""The web pages in real Chromium, against the demo city served over HTTP: the home page, a
search with a facet clicked, a dataset page (preview table paging, copy-ready snippets that
really run, download links that resolve and then show their size), a feature page, the
Persian pages (right to left, Persian digits, Jalali dates), the language choice remembered
across pages, keyboard use (skip link, search box) and a phone's width. Every page is also
audited for what the layout promises (landmarks, one h1 and no skipped heading level,
labelled inputs, captioned tables with scoped headers, titled frames, text contrast of at
least 4.5:1) and saved as a screenshot under test-output/screenshots/."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from api.i18n import number, show_date

pytestmark = pytest.mark.usefixtures("demo_loaded")

# Checks run inside the page; returns a list of problems (empty when the page is fine).
AUDIT = """() => {
  const problems = [];
  const outside = (el) => !el.closest('.leaflet-container');
  for (const sel of ['header', 'nav', 'main', 'footer'])
    if (!document.querySelector(sel)) problems.push('no <' + sel + '> landmark');
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) problems.push(h1 + ' h1 elements');
  let last = 0;
  document.querySelectorAll('h1, h2, h3, h4, h5, h6').forEach((h) => {
    const level = +h.tagName[1];
    if (last && level > last + 1)
      problems.push('heading level jumps ' + last + ' -> ' + level + ': ' + h.textContent.trim());
    last = level;
  });
  document.querySelectorAll('input:not([type=hidden]), select, textarea').forEach((el) => {
    if (!(el.labels && el.labels.length) && !el.getAttribute('aria-label')
        && !el.getAttribute('aria-labelledby') && outside(el))
      problems.push('unlabelled control ' + el.outerHTML.slice(0, 80));
  });
  document.querySelectorAll('table').forEach((t) => {
    if (!outside(t)) return;
    if (!t.querySelector('caption')) problems.push('table without caption');
    t.querySelectorAll('th').forEach((th) => {
      if (!th.getAttribute('scope'))
        problems.push('th without scope: ' + th.textContent.trim().slice(0, 40));
    });
  });
  document.querySelectorAll('img').forEach((img) => {
    if (outside(img) && !img.hasAttribute('alt')) problems.push('img without alt');
  });
  document.querySelectorAll('iframe').forEach((f) => {
    if (!f.title) problems.push('iframe without title');
  });
  if (!document.querySelector('a.skip-link[href="#main"]')) problems.push('no skip link');

  const rgba = (s) => (s.match(/[\\d.]+/g) || [0, 0, 0, 0]).map(Number)
                        .concat([1]).slice(0, 4);
  const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3]))
                                .concat([1]);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let base = [255, 255, 255, 1];
    for (let i = layers.length - 1; i >= 0; i--) base = over(layers[i], base);
    return base;
  };
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || seen.has(el) || !outside(el)) continue;
    seen.add(el);
    if (el.closest('script, style, noscript, option, .visually-hidden, :disabled')) continue;
    if (!el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden') continue;
    const bg = background(el);
    const fg = over(rgba(style.color), bg);
    const [a, b] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && +style.fontWeight >= 700);
    if (ratio < (large ? 3 : 4.5))
      problems.push('contrast ' + ratio.toFixed(2) + ':1 for "' + n.textContent.trim()
                    .slice(0, 30) + '" (' + style.color + ' on rgb(' + bg.slice(0, 3) + '))');
  }
  return problems;
}"""


def audit(page: Page) -> None:
    problems = page.evaluate(AUDIT)
    assert not problems, f"{page.url}:\n" + "\n".join(problems)


def no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    inner = page.evaluate("window.innerWidth")
    assert width <= inner, f"{page.url} scrolls sideways: {width}px wide in {inner}px"


def titles(datasets: list[dict[str, Any]]) -> list[str]:
    """The titles an English page shows (the Persian one where there is no English)."""
    return [d["title"]["en"] or d["title"]["fa"] for d in datasets]


def get(http: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    r = http.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_audit_finds_what_it_looks_for(page: Page) -> None:
    page.goto("/collections")
    page.evaluate("""() => document.querySelector('main').insertAdjacentHTML('beforeend',
      '<h4>jump</h4><p style="color:#aaa">faint</p><input id="x">' +
      '<table><tr><th>h</th></tr></table><h1>two</h1><img src="data:,">')""")
    problems = "\n".join(page.evaluate(AUDIT))
    for words in ("heading level jumps 1 -> 4", "contrast 2.32:1", "unlabelled control",
                  "table without caption", "th without scope", "2 h1", "img without alt"):
        assert words in problems, (words, problems)


# --- home ----------------------------------------------------------------------------------


def test_home_page(page: Page, shot: Any, http: httpx.Client) -> None:
    response = page.goto("/")
    assert response is not None and response.status == 200
    expect(page.locator("h1")).to_have_text("Open data of the city")
    # Themes with the catalogue's counts, each a link to the search filtered by it.
    themes = {f["value"]: f["count"] for f in get(http, "/datasets")["facets"]["theme"]}
    links = page.locator(".theme-list a")
    assert links.count() == len(themes)
    for i in range(links.count()):
        href = links.nth(i).get_attribute("href")
        value = re.search(r"theme=([\w-]+)", href)[1]
        count = themes[value]
        expected = f"{count} dataset" if count == 1 else f"{count} datasets"
        expect(links.nth(i).locator(".count")).to_have_text(expected)
    # Recently updated: the newest datasets, newest first.
    newest = get(http, "/datasets", sort="-modified", limit=6, lang="en")["datasets"]
    assert page.locator(".cards h3").all_inner_texts() == titles(newest)
    # The city map (the maps pages, embedded) and the OGC API landing links kept.
    frame = page.locator("iframe.map-frame")
    assert "/maps/explore?layers=districts" in frame.get_attribute("src")
    expect(page.frame_locator("iframe.map-frame").locator(".leaflet-container")).to_have_count(1)
    for rel in ("conformance", "data", "service-desc", "search"):
        assert page.locator(f'a[rel="{rel}"]').count() == 1, rel
    audit(page)
    shot(page, "web-home-en")


# --- search --------------------------------------------------------------------------------


def test_search_with_a_facet_click(page: Page, shot: Any, http: httpx.Client) -> None:
    page.goto("/datasets")
    total = get(http, "/datasets")["numberMatched"]
    expect(page.locator("p.status")).to_contain_text(f"of {total}")
    page.locator("#facet-theme ~ ul a", has_text="Traffic").click()
    page.wait_for_url(re.compile(r"theme=traffic"))
    traffic = get(http, "/datasets", theme="traffic", lang="en")
    expect(page.locator(".results .card")).to_have_count(len(traffic["datasets"]))
    assert traffic["numberMatched"] < total
    assert page.locator(".results h3").all_inner_texts() == titles(traffic["datasets"])
    selected = page.locator("#facet-theme ~ ul a[aria-current=true]")
    expect(selected).to_contain_text("Traffic")
    # The map of result extents: one rectangle per dataset on the page.
    expect(page.locator("#extents-map[data-drawn]")).to_have_count(1)
    expect(page.locator("#extents-map path.leaflet-interactive")).to_have_count(
        sum(1 for d in traffic["datasets"] if d["extent"]))
    page.locator(".results li[data-slug]").first.hover()  # its rectangle stands out
    expect(page.locator('#extents-map path[stroke-width="4"]')).to_have_count(1)
    audit(page)
    shot(page, "web-search-traffic-en")
    # The active filter can be removed.
    page.locator(".active-filters a.chip").first.click()
    page.wait_for_url(lambda url: "theme=" not in url)
    expect(page.locator(".results .card")).to_have_count(min(total, 20))


def test_search_sorts_and_pages(page: Page, http: httpx.Client) -> None:
    page.goto("/datasets?limit=5")
    page.select_option("#sort", "title")
    page.locator(".search-form button[type=submit]").click()
    page.wait_for_url(re.compile(r"sort=title"))
    by_title = get(http, "/datasets", sort="title", limit=5, lang="en")["datasets"]
    assert page.locator(".results h3").all_inner_texts() == titles(by_title)
    page.locator('a[rel="next"]').click()
    page.wait_for_url(re.compile(r"offset=5"))
    second = get(http, "/datasets", sort="title", limit=5, offset=5, lang="en")["datasets"]
    assert page.locator(".results h3").all_inner_texts() == titles(second)
    assert page.locator("ol.cards").get_attribute("start") == "6"
    expect(page.locator("#sort")).to_have_value("title")  # the form keeps the choice


def test_search_from_the_header_box(page: Page, http: httpx.Client) -> None:
    page.goto("/collections")
    page.fill("#site-q", "metro")
    page.press("#site-q", "Enter")
    page.wait_for_url(re.compile(r"/datasets\?q=metro"))
    found = get(http, "/datasets", q="metro", lang="en")["datasets"]
    assert found and page.locator(".results h3").all_inner_texts() == titles(found)
    expect(page.locator("#q")).to_have_value("metro")


# --- a dataset -----------------------------------------------------------------------------


def test_dataset_page(page: Page, shot: Any, http: httpx.Client, live_server: str,
                      tmp_path: Path) -> None:
    d = get(http, "/datasets/schools")
    page.goto("/datasets/schools")
    expect(page.locator("h1")).to_have_text(d["title"]["en"])
    assert page.locator("iframe.map-frame").get_attribute("src").startswith(
        f"{live_server}/maps/schools?embed=1")
    # The preview table: the first rows, then the next ones, then back.
    rows = page.locator("#preview tbody tr")
    expect(rows).to_have_count(10)
    first = get(http, "/collections/schools/items", limit=10)
    ids = [str(f["id"]) for f in first["features"]]
    assert page.locator("#preview tbody th").all_inner_texts() == ids
    expect(page.locator(".preview-status")).to_have_text(f"Rows 1–10 of {d['feature_count']}")
    expect(page.locator('[data-page="prev"]')).to_be_disabled()
    page.click('[data-page="next"]')
    expect(page.locator(".preview-status")).to_have_text(
        f"Rows 11–20 of {d['feature_count']}")
    after = get(http, "/collections/schools/items", limit=10, after=ids[-1])
    assert page.locator("#preview tbody th").all_inner_texts() == [
        str(f["id"]) for f in after["features"]]
    name = after["features"][0]["properties"]["name_en"]
    expect(page.locator("#preview tbody tr").first).to_contain_text(name)
    page.click('[data-page="prev"]')
    expect(page.locator(".preview-status")).to_have_text(f"Rows 1–10 of {d['feature_count']}")
    assert page.locator("#preview tbody th").all_inner_texts() == ids
    # Versions and runs, as the catalogue has them.
    expect(page.locator("#versions-caption ~ tbody tr")).to_have_count(len(d["versions"]))
    expect(page.locator("#runs-caption ~ tbody tr")).to_have_count(len(d["runs"]))
    run = d["runs"][0]
    expect(page.locator("#runs-caption ~ tbody tr").first).to_contain_text(
        str(run["rows_loaded"]))
    audit(page)
    shot(page, "web-dataset-en")


def test_dataset_snippets_are_copy_ready(page: Page, live_server: str, tmp_path: Path
                                         ) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    page.goto("/datasets/schools")
    codes = {s: page.locator(f"#code-{s}").inner_text()
             for s in ("curl", "requests", "geopandas", "fetch")}
    for code in codes.values():
        assert f"{live_server}/" in code and "schools" in code
    # The copy button puts the snippet on the clipboard and says so.
    button = page.locator('button.copy[data-copy="code-geopandas"]')
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == codes["geopandas"]
    # Each snippet runs as written.
    done: dict[str, dict[str, Any]] = {}
    for name in ("requests", "geopandas"):
        done[name] = {}
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(codes[name], name, "exec"), done[name])  # our own snippet, as shown
    assert done["requests"]["page"]["numberMatched"] == 57
    assert len(done["requests"]["page"]["features"]) == 57
    assert len(done["geopandas"]["gdf"]) == 57 and done["geopandas"]["gdf"].crs.to_epsg() == 4326
    run = subprocess.run(["bash", "-e", "-c", codes["curl"]], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert '"FeatureCollection"' in run.stdout and (tmp_path / "data.gpkg").stat().st_size > 0
    matched = page.evaluate("async () => {" + codes["fetch"] + "\nreturn page.numberMatched;}")
    assert matched == 57


def test_download_links_resolve_and_then_show_their_size(page: Page, live_server: str
                                                         ) -> None:
    page.goto("/datasets/districts")
    links = page.locator("a.download")
    assert links.count() == 9
    hrefs = [(links.nth(i).get_attribute("href"), links.nth(i).get_attribute("type"))
             for i in range(links.count())]
    sizes = {}
    with httpx.Client(timeout=120) as client:
        for href, media in hrefs:
            r = client.get(href)
            assert r.status_code == 200, (href, r.text[:200])
            assert r.headers["content-type"].split(";")[0] == media.split(";")[0]
            assert len(r.content) > 100
            sizes[href.rsplit("=", 1)[1]] = len(r.content)
    page.reload()
    for fmt, size in sizes.items():
        shown = page.locator(f'a.download[href$="format={fmt}"] .size').inner_text()
        if fmt in ("csv", "geojson", "geojsonseq"):
            assert shown == "streamed"
            continue
        value, unit = re.fullmatch(r"([\d.]+) (B|KB|MB)", shown).groups()
        scale = {"B": 1, "KB": 1024, "MB": 1024 ** 2}[unit]
        assert abs(float(value) * scale - size) <= 0.05 * scale + 1, (fmt, shown, size)


def test_excel_is_not_offered_above_its_row_limit(page: Page,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from api import downloads

    monkeypatch.setattr(downloads, "XLSX_MAX_ROWS", 50)  # the server runs in this process
    page.goto("/datasets/schools")  # 57 rows
    expect(page.locator('a.download[href$="format=xlsx"]')).to_have_count(0)
    expect(page.locator(".download.unavailable")).to_contain_text("Too many rows for Excel")
    page.goto("/datasets/metro-lines")  # 4 rows
    expect(page.locator('a.download[href$="format=xlsx"]')).to_have_count(1)


# --- a feature -----------------------------------------------------------------------------


def test_feature_page(page: Page, shot: Any, http: httpx.Client) -> None:
    f = get(http, "/collections/districts/items", limit=1)["features"][0]
    page.goto(f"/collections/districts/items/{f['id']}")
    expect(page.locator("h1")).to_contain_text(f"Feature {f['id']} of Municipal districts")
    table = page.locator("table.attributes")
    population = table.locator("tr", has=page.locator("code", has_text="population"))
    expect(population.locator("th .col-label")).to_have_text("Population")
    expect(population.locator("td")).to_contain_text(f"{f['properties']['population']:,}")
    expect(table).to_contain_text(f["properties"]["name_en"])
    expect(page.locator("#feature-map[data-drawn]")).to_have_count(1)
    expect(page.locator("#feature-map path.leaflet-interactive")).to_have_count(1)
    assert page.locator(".permalink").inner_text().endswith(
        f"/collections/districts/items/{f['id']}")
    audit(page)
    shot(page, "web-feature-en")


def test_point_feature_page_draws_the_point(page: Page, http: httpx.Client) -> None:
    f = get(http, "/collections/schools/items", limit=1)["features"][0]
    page.goto(f"/collections/schools/items/{f['id']}")
    expect(page.locator("#feature-map path.leaflet-interactive")).to_have_count(1)


# --- Persian -------------------------------------------------------------------------------


def test_persian_pages_read_right_to_left(page_fa: Page, shot: Any, http: httpx.Client
                                          ) -> None:
    d = get(http, "/datasets/schools")
    page = page_fa
    page.goto("/datasets/schools")  # Accept-Language: fa
    html = page.locator("html")
    expect(html).to_have_attribute("dir", "rtl")
    expect(html).to_have_attribute("lang", "fa")
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    expect(page.locator("h1")).to_have_text(d["title"]["fa"])
    # The layout mirrors: the site name sits on the right, the language switch on the left.
    width = page.viewport_size["width"]
    brand, switch = page.locator(".brand").bounding_box(), page.locator(".lang-switch")
    assert brand["x"] > width / 2 and switch.bounding_box()["x"] < width / 2
    expect(switch).to_have_text("English")
    # Persian digits and Jalali dates.
    about = page.locator("dl.about")
    expect(about).to_contain_text(number(d["feature_count"], "fa"))
    expect(about).to_contain_text(show_date(d["modified"], "fa"))
    expect(page.locator("#preview tbody tr")).to_have_count(10)
    first = page.locator("#preview tbody th").first.inner_text()
    assert re.fullmatch("[۰-۹]+", first), first
    expect(page.locator(".preview-status")).to_contain_text(number(d["feature_count"], "fa"))
    expect(page.locator("#preview-title")).to_have_text("ردیف‌های نخست")
    audit(page)
    shot(page, "web-dataset-fa")
    page.goto("/")
    expect(page.locator("h1")).to_have_text("داده‌های باز شهر")
    assert re.search("[۰-۹]", page.locator(".theme-list").inner_text())
    audit(page)
    shot(page, "web-home-fa")
    page.goto("/datasets?theme=traffic")
    audit(page)
    shot(page, "web-search-traffic-fa")


def test_language_switch_is_remembered_across_pages(page: Page, shot: Any) -> None:
    page.goto("/datasets?q=school")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.locator("a.lang-switch").click()
    page.wait_for_url(re.compile(r"lang=fa"))
    assert "q=school" in page.url and "/datasets?" in page.url  # the same page and query
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(page.locator("#q")).to_have_value("school")
    page.locator(".results h3 a").first.click()  # a plain link: the cookie remembers
    page.wait_for_url(re.compile(r"/datasets/[\w-]+$"))
    expect(page.locator("html")).to_have_attribute("lang", "fa")
    page.goto("/collections")  # the browser still asks for English
    expect(page.locator("html")).to_have_attribute("lang", "fa")
    shot(page, "web-collections-fa")
    page.locator("a.lang-switch").click()
    page.wait_for_url(re.compile(r"/collections\?lang=en"))
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", "en")


# --- keyboard and phone --------------------------------------------------------------------


def test_keyboard_reaches_the_skip_link_and_the_search_box(page: Page) -> None:
    page.goto("/datasets/schools")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.className")
    assert focused == "skip-link"
    box = page.locator(".skip-link").bounding_box()
    assert box["y"] >= 0 and box["height"] > 10  # shown when focused
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # focus is visible
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    assert page.evaluate("document.activeElement.id") == "main"
    # From the top of a page, a few Tabs reach the search box; Enter searches.
    page.goto("/")
    for _ in range(5):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "site-q":
            break
    else:
        pytest.fail("Tab never reached the search box")
    page.keyboard.type("hospital")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/datasets\?q=hospital"))
    expect(page.locator(".results h3").first).to_contain_text("Hospital")


def test_phone_search_folds_the_filters(phone: Page) -> None:
    phone.goto("/datasets")
    panel = phone.locator("details.facet-panel")
    assert panel.evaluate("d => d.open") is False  # the results come first on a phone
    phone.locator(".facet-panel > summary").click()
    phone.locator("#facet-theme ~ ul a", has_text="ترافیک").click()
    phone.wait_for_url(re.compile(r"theme=traffic"))
    expect(phone.locator(".active-filters .chip")).to_contain_text("ترافیک")
    no_horizontal_scroll(phone)


@pytest.mark.parametrize(("path", "name"), [
    ("/", "home"), ("/datasets?theme=infrastructure", "search"),
    ("/datasets/buildings", "dataset"), ("/collections/districts/items/1", "feature"),
    ("/collections", "collections"), ("/collections/roads/items", "items"),
])
def test_phone_width_has_no_horizontal_scroll(phone: Page, shot: Any, path: str,
                                              name: str) -> None:
    phone.goto(path)
    phone.wait_for_load_state("load")
    no_horizontal_scroll(phone)
    audit(phone)
    shot(phone, f"web-phone-{name}-fa")
