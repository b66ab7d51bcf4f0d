"""A read-only CKAN Action API (``/api/3/action/{name}``, and ``/api/action/{name}`` as
CKAN also answers), so CKAN clients and harvesters (ckanapi, ckanext-harvest, DCAT
harvesters) work against Shahr.

As CKAN does: GET with query parameters or POST with a JSON (or form) body; every answer is
the envelope ``{"help": ..., "success": ..., "result" | "error": ...}``; errors carry CKAN's
``__type`` (Not Found Error 404, Validation Error 409, Search Query Error 409, Authorization
Error 403, Bad Request 400). Problem documents are not used under /api.

``package_search`` reuses the catalogue's Persian-aware search for ``q`` (and its sort),
then applies CKAN's filters (``fq``/``fq_list``, and field clauses in ``q``) and counts
facets over the matched datasets, as Solr does. Filter syntax: clauses ``field:value``,
``field:"quoted value"``, ``field:(a OR b)``, ranges ``field:[2024-01-01T00:00:00Z TO *]``
on metadata_modified/metadata_created, a leading ``+`` or ``-`` (must / must not), joined
by spaces or AND.
"""

from __future__ import annotations

import inspect
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.routes.features import base_url
from catalog import metadata as md
from catalog import search as cat
from catalog.models import THEMES
from catalog.text import search_fold

router = APIRouter(tags=["CKAN action API"])
API_VERSION = 3
CKAN_VERSION = "2.10.0"  # the action API whose shapes and semantics this follows
MAX_ROWS = 1000  # ckan.search.rows_max
DEFAULT_ROWS = 10
DEFAULT_FACET_LIMIT = 50
LIST_MAX = 1000  # ckan.group_and_organization_list_max
LIST_ALL_FIELDS_MAX = 25  # ckan.group_and_organization_list_all_fields_max
SEARCH_PAGE = cat.MAX_LIMIT
FACET_FIELDS = ("organization", "tags", "groups", "res_format", "license_id")
SEARCH_PARAMS = {
    "q", "fq", "fq_list", "rows", "start", "sort", "facet", "facet.field", "facet.limit",
    "facet.mincount", "fl", "ext_bbox", "include_private", "include_drafts",
    "include_deleted", "use_default_schema", "defType", "qf", "df", "wt", "callback", "_",
}
WRITE_ACTION = re.compile(r"_(create|update|patch|delete|purge|revise|reorder|follow|"
                          r"unfollow|invite|upload)$|^(member|bulk|user|api_token|package_"
                          r"relationship|dashboard)_")


class CkanError(Exception):
    """An action error, answered as CKAN answers it."""

    def __init__(self, status: int, kind: str, message: str | None = None,
                 fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message or kind)
        self.status, self.kind, self.message, self.fields = status, kind, message, fields

    def error(self) -> dict[str, Any]:
        out: dict[str, Any] = {"__type": self.kind}
        if self.message is not None:
            out["message"] = self.message
        out.update(self.fields or {})
        return out


def not_found(what: str) -> CkanError:
    return CkanError(404, "Not Found Error", f"Not found: {what}")


def invalid(field: str, message: str) -> CkanError:
    return CkanError(409, "Validation Error", fields={field: [message]})


def query_error(message: str) -> CkanError:
    return CkanError(409, "Search Query Error", f"Search Query is invalid: {message}")


# --- parameters ------------------------------------------------------------------------------


async def _request_params(request: Request) -> dict[str, Any]:
    """Query parameters, then (POST) the JSON or form body over them."""
    params: dict[str, Any] = {}
    for k, v in request.query_params.multi_items():
        params[k] = [*params[k], v] if isinstance(params.get(k), list) else (
            [params[k], v] if k in params else v)
    if request.method != "POST":
        return params
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        params.update({k: v for k, v in form.multi_items() if isinstance(v, str)})
        return params
    raw = await request.body()
    if not raw.strip():
        return params
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CkanError(400, "Bad Request", f"Bad request - JSON Error: {exc}") from None
    if not isinstance(body, dict):
        raise CkanError(400, "Bad Request", "Bad request - JSON Error: the request body "
                        f"must be a JSON object, not {type(body).__name__}")
    params.update(body)
    return params


def _str(p: dict[str, Any], name: str, default: str | None = None) -> str | None:
    v = p.get(name)
    if v is None:
        return default
    if isinstance(v, list):
        raise invalid(name, "Give one value, not a list")
    if not isinstance(v, str | int | float):
        raise invalid(name, "Must be a string")
    s = str(v)
    if "\x00" in s:
        raise invalid(name, "Must not contain NUL characters")
    return s


def _required(p: dict[str, Any], name: str) -> str:
    v = _str(p, name)
    if v is None or not v.strip():
        raise invalid(name, "Missing value")
    return v.strip()


def _int(p: dict[str, Any], name: str, default: int, *, minimum: int = 0) -> int:
    v = p.get(name)
    if v is None or v == "":
        return default
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise invalid(name, "Invalid integer")
    try:
        n = int(v)
    except ValueError:
        raise invalid(name, "Invalid integer") from None
    if n < minimum:
        raise invalid(name, "Must be a natural number" if minimum == 0
                      else f"Must be at least {minimum}")
    return n


def _bool(p: dict[str, Any], name: str, default: bool) -> bool:
    v = p.get(name)
    if v is None or v == "":
        return default
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "1", "yes", "on", "t", "y"):
        return True
    if s in ("false", "0", "no", "off", "f", "n"):
        return False
    raise invalid(name, f"Unrecognized boolean: {v!r}")


def _str_list(p: dict[str, Any], name: str) -> list[str]:
    """A list given as a list (JSON body) or as a JSON string (GET), as CKAN reads it."""
    v = p.get(name)
    if v is None or v == "":
        return []
    if isinstance(v, str):
        try:  # '["a", "b"]' (CKAN's GET form); a plain word is a list of one
            v = json.loads(v) if v.lstrip().startswith("[") else [v]
        except ValueError:
            raise invalid(name, "Could not parse as valid JSON") from None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise invalid(name, "Must be a list of strings")
    return v


# --- the catalogue, read for CKAN ------------------------------------------------------------


@dataclass
class Ctx:
    request: Request
    base: str
    conn: Any

    async def records(self, slugs: Iterable[str] | None = None) -> list[dict[str, Any]]:
        return await md.load_records(self.conn, None if slugs is None else list(slugs))

    async def record(self, id_or_name: str) -> dict[str, Any] | None:
        found = await self.records([id_or_name])
        if found:
            return found[0]
        if re.fullmatch(r"[0-9a-f-]{36}", id_or_name):
            return next((r for r in await self.records()
                         if md.package_id(r["slug"]) == id_or_name), None)
        return None


Action = Callable[[Ctx, dict[str, Any]], Awaitable[Any]]
ACTIONS: dict[str, Action] = {}


def action(fn: Action) -> Action:
    ACTIONS[fn.__name__] = fn
    return fn


@action
async def status_show(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Return the site's title, description, URL, the CKAN API version followed and the
    default locale."""
    return {"site_title": md.SITE_TITLE["en"], "site_description": md.SITE_DESCRIPTION["en"],
            "site_url": ctx.base, "ckan_version": CKAN_VERSION, "api_version": API_VERSION,
            "error_emails_to": None, "locale_default": "fa", "locales_offered": ["fa", "en"],
            "extensions": ["shahr"]}


@action
async def package_list(ctx: Ctx, p: dict[str, Any]) -> list[str]:
    """Return the names (slugs) of the published datasets, sorted. Parameters: limit,
    offset."""
    limit = _int(p, "limit", 0)
    offset = _int(p, "offset", 0)
    names = [r["slug"] for r in await ctx.records()]
    return names[offset:offset + limit] if limit else names[offset:]


@action
async def current_package_list_with_resources(ctx: Ctx, p: dict[str, Any]
                                              ) -> list[dict[str, Any]]:
    """Return the datasets as package dicts, most recently modified first. Parameters:
    limit, offset."""
    limit = _int(p, "limit", 0)
    offset = _int(p, "offset", 0)
    recs = sorted(await ctx.records(), key=lambda r: r["modified"], reverse=True)
    recs = recs[offset:offset + limit] if limit else recs[offset:]
    return [md.ckan_package(r, ctx.base) for r in recs]


@action
async def package_show(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Return one dataset as a package dict. Parameters: id (its name or id)."""
    ident = _required(p, "id")
    rec = await ctx.record(ident)
    if rec is None:
        raise not_found(f"no dataset {ident!r}; package_list lists them")
    return md.ckan_package(rec, ctx.base)


@action
async def resource_show(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Return one resource (a download format of a dataset). Parameters: id."""
    ident = _required(p, "id")
    for rec in await ctx.records():
        for i, d in enumerate(md.DISTRIBUTIONS.values()):
            if md.resource_id(rec["slug"], d.code) == ident:
                return md.ckan_resource(rec, d, ctx.base, i)
    raise not_found(f"no resource {ident!r}")


def _sorted_groups(items: list[dict[str, Any]], sort: str | None, name: str
                   ) -> list[dict[str, Any]]:
    field, _, direction = (sort or "title asc").strip().lower().partition(" ")
    direction = direction.strip() or "asc"
    if field not in ("name", "title", "package_count") or direction not in ("asc", "desc"):
        raise invalid("sort", f"Cannot sort {name} by {sort!r}: use name, title or "
                      "package_count with asc or desc")
    return sorted(items, key=lambda g: (g[field] if field != "title" else g[field].lower(),
                                        g["name"]), reverse=direction == "desc")


def _list_result(items: list[dict[str, Any]], p: dict[str, Any], kind: str) -> list[Any]:
    all_fields = _bool(p, "all_fields", False)
    wanted = _str_list(p, f"{kind}s")
    if wanted:
        items = [g for g in items if g["name"] in wanted]
    items = _sorted_groups(items, _str(p, "sort"), kind)
    maximum = LIST_ALL_FIELDS_MAX if all_fields else LIST_MAX
    limit = min(_int(p, "limit", maximum), maximum)
    offset = _int(p, "offset", 0)
    items = items[offset:offset + limit]
    if not all_fields:
        return [g["name"] for g in items]
    if not _bool(p, "include_dataset_count", True):
        for g in items:
            g.pop("package_count", None)
    return items


async def _organisations(ctx: Ctx) -> list[dict[str, Any]]:
    return [{**md.ckan_organisation(o), "package_count": int(o["package_count"])}
            for o in await md.load_organisations(ctx.conn)]


@action
async def organization_list(ctx: Ctx, p: dict[str, Any]) -> list[Any]:
    """Return the organisations' names (or dicts with all_fields=true). Parameters: sort
    ("title asc" default; name, title or package_count), limit, offset, organizations,
    all_fields, include_dataset_count."""
    return _list_result(await _organisations(ctx), p, "organization")


async def _with_packages(ctx: Ctx, p: dict[str, Any], found: dict[str, Any],
                         match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    recs = [r for r in await ctx.records() if match(r)]
    found = {**found, "package_count": len(recs), "users": [], "extras": [], "groups": [],
             "tags": []}
    if _bool(p, "include_datasets", False):
        found["packages"] = [md.ckan_package(r, ctx.base) for r in recs[:LIST_MAX]]
    return found


@action
async def organization_show(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Return one organisation. Parameters: id (name or id), include_datasets."""
    ident = _required(p, "id")
    org = next((o for o in await _organisations(ctx) if ident in (o["name"], o["id"])), None)
    if org is None:
        raise not_found(f"no organization {ident!r}; organization_list lists them")
    return await _with_packages(ctx, p, org, lambda r: r["org_slug"] == org["name"])


async def _groups(ctx: Ctx) -> list[dict[str, Any]]:
    counts = Counter(r["theme"] for r in await ctx.records())
    return [md.ckan_group(t, counts.get(t, 0)) for t in THEMES]


@action
async def group_list(ctx: Ctx, p: dict[str, Any]) -> list[Any]:
    """Return the groups (the catalogue's themes). Parameters as organization_list, with
    groups for organizations."""
    return _list_result(await _groups(ctx), p, "group")


@action
async def group_show(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Return one group (theme). Parameters: id (name or id), include_datasets."""
    ident = _required(p, "id")
    group = next((g for g in await _groups(ctx) if ident in (g["name"], g["id"])), None)
    if group is None:
        raise not_found(f"no group {ident!r}; groups: {', '.join(THEMES)}")
    return await _with_packages(ctx, p, group, lambda r: r["theme"] == group["name"])


@action
async def tag_list(ctx: Ctx, p: dict[str, Any]) -> list[Any]:
    """Return the tags (keywords) of the published datasets, sorted. Parameters: query
    (part of a tag; Persian letter forms and digits are folded), all_fields,
    vocabulary_id."""
    if _str(p, "vocabulary_id"):
        raise not_found("no tag vocabularies here; tags are free keywords")
    query = search_fold(_str(p, "query") or "")
    tags = sorted({k for r in await ctx.records() for k in r["keywords"] or []})
    if query:
        tags = [t for t in tags if query in search_fold(t)]
    if _bool(p, "all_fields", False):
        return [md.ckan_tag(t) for t in tags]
    return tags


@action
async def license_list(ctx: Ctx, p: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the licences the published datasets use (SPDX ids)."""
    used = sorted({r["licence"] for r in await ctx.records()})
    return [{"id": lic, "title": lic, "url": md.licence_url(lic), "status": "active",
             "od_conformance": "approved" if lic in md.OPEN_LICENCES else "not reviewed",
             "osd_conformance": "not reviewed"} for lic in used]


@action
async def help_show(ctx: Ctx, p: dict[str, Any]) -> str:
    """Return the documentation of an action. Parameters: name."""
    name = _required(p, "name")
    fn = ACTIONS.get(name)
    if fn is None:
        raise not_found(f"no action {name!r}")
    return inspect.getdoc(fn) or ""


# --- package_search --------------------------------------------------------------------------

_CLAUSE = re.compile(
    r"""\s*(?P<sign>[+-]?)(?P<field>[A-Za-z_][\w.]*):(?P<value>"(?:[^"\\]|\\.)*"|\([^()]*\)|"""
    r"""[\[{][^\]}]*[\]}]|[^\s()"]+)\s*""")
_JOIN = re.compile(r"\s*(AND|&&)\s+")
FILTER_FIELDS = ("organization", "owner_org", "tags", "groups", "theme", "res_format",
                 "license_id", "name", "id", "metadata_modified", "metadata_created",
                 "capacity", "dataset_type", "type", "state")
_DATE_FIELDS = ("metadata_modified", "metadata_created")


@dataclass(frozen=True)
class Clause:
    field: str
    values: tuple[str, ...] = ()  # alternatives
    low: datetime | None = None  # ranges (dates)
    high: datetime | None = None
    low_incl: bool = True
    high_incl: bool = True
    negate: bool = False
    is_range: bool = False


def _unquote(v: str) -> str:
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v


def _solr_date(text: str, field: str) -> datetime | None:
    """A range end: ``*``, ``NOW`` (optionally ``-1DAY``/``-2HOURS``...), or an ISO date."""
    t = text.strip()
    if t == "*":
        return None
    m = re.fullmatch(r"NOW(?:([+-])(\d+)(DAY|DAYS|HOUR|HOURS|MINUTE|MINUTES))?(?:/DAY)?", t)
    if m:
        now = datetime.now(UTC)
        if m.group(1):
            unit = {"D": "days", "H": "hours", "M": "minutes"}[m.group(3)[0]]
            delta = timedelta(**{unit: int(m.group(2))})
            now = now + delta if m.group(1) == "+" else now - delta
        return now
    try:
        d = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise query_error(f"{field}: {text!r} is not a date (use e.g. 2024-01-31T00:00:00Z, "
                          "NOW-7DAYS or *)") from None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _clause(sign: str, field: str, raw: str) -> Clause:
    if field not in FILTER_FIELDS:
        raise query_error(f"unknown field {field!r}; fields: {', '.join(FILTER_FIELDS)}")
    negate = sign == "-"
    if raw[0] in "[{":
        if field not in _DATE_FIELDS:
            raise query_error(f"{field}: ranges are only for {', '.join(_DATE_FIELDS)}")
        m = re.fullmatch(r"([\[{])\s*(\S+)\s+TO\s+(\S+)\s*([\]}])", raw)
        if not m:
            raise query_error(f"{field}: a range is [FROM TO UNTIL], e.g. "
                              "[2024-01-01T00:00:00Z TO *]")
        return Clause(field, low=_solr_date(m.group(2), field),
                      high=_solr_date(m.group(3), field), low_incl=m.group(1) == "[",
                      high_incl=m.group(4) == "]", negate=negate, is_range=True)
    if raw[0] == "(":
        parts = [s.strip() for s in re.split(r"\s+OR\s+", raw[1:-1].strip())]
        if not all(parts) or any(re.search(r"\s(AND|NOT)\s", f" {s} ") for s in parts):
            raise query_error(f"{field}: only alternatives joined by OR are understood in "
                              f"parentheses, e.g. {field}:(a OR b)")
        values = tuple(_unquote(s) for s in parts)
    else:
        values = (_unquote(raw),)
    if field in _DATE_FIELDS:
        d = _solr_date(values[0], field)
        return Clause(field, low=d, high=d, negate=negate, is_range=True)
    return Clause(field, values=values, negate=negate)


def parse_filter(text: str, *, free_text: bool = False) -> tuple[list[Clause], str]:
    """Clauses of an fq (or of q, whose words that are not clauses are returned as text)."""
    clauses: list[Clause] = []
    words: list[str] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _CLAUSE.match(text, pos)
        if m and (m.group("field") in FILTER_FIELDS or not free_text):
            clauses.append(_clause(m.group("sign"), m.group("field"), m.group("value")))
            pos = m.end()
        elif free_text:
            w = re.match(r"\s*(\S+)\s*", text[pos:])
            assert w is not None
            if w.group(1) not in ("*:*", "AND", "&&"):
                words.append(w.group(1))
            pos += w.end()
        else:
            j = _JOIN.match(text, pos)
            if j is None:
                raise query_error(f"cannot read the filter from {text[pos:pos + 40]!r}; "
                                  'write clauses field:value, field:"a b" or field:(a OR b) '
                                  "joined by spaces or AND")
            pos = j.end()
    return clauses, " ".join(words)


def _fmt_matches(value: str) -> bool:
    v = value.lower()
    return any(v in (d.code, d.label.lower(), d.media_type) for d in md.DISTRIBUTIONS.values())


def _matches(c: Clause, rec: dict[str, Any]) -> bool:
    if c.is_range:
        when = rec["modified"] if c.field == "metadata_modified" else (
            rec.get("issued") or rec["created"])
        ok = ((c.low is None or (when >= c.low if c.low_incl else when > c.low))
              and (c.high is None or (when <= c.high if c.high_incl else when < c.high)))
        if c.low is not None and c.low == c.high:  # a bare date: that day, to the second
            ok = abs((when - c.low).total_seconds()) < 1
        return ok != c.negate
    have: set[str]
    match c.field:
        case "organization":
            have = {rec["org_slug"]}
        case "owner_org":
            have = {rec["org_slug"], md.organisation_id(rec["org_slug"])}
        case "tags":
            have = set(rec["keywords"] or [])
        case "groups" | "theme":
            have = {rec["theme"]}
        case "license_id":
            have = {rec["licence"]}
        case "name":
            have = {rec["slug"]}
        case "id":
            have = {md.package_id(rec["slug"])}
        case "capacity":
            have = {"public"}
        case "dataset_type" | "type":
            have = {"dataset"}
        case "state":
            have = {"active"}
        case "res_format":
            return any(_fmt_matches(v) for v in c.values) != c.negate
        case _:  # pragma: no cover - parse_filter refused it
            return False
    hit = any(v == "*" or v in have for v in c.values)
    return hit != c.negate


_PUSH_DOWN = {"organization": "organisation", "tags": "keyword", "groups": "theme",
              "theme": "theme", "license_id": "licence"}


def _criteria(text: str, clauses: list[Clause], bbox: str | None) -> cat.Criteria:
    """The catalogue search to start from: the words, the bbox, and each filter field that
    has exactly one plain positive clause (its alternatives are ORed, as in the catalogue).
    Every clause is still checked on the results, so this only narrows what is read."""
    by_field: dict[str, list[Clause]] = {}
    for c in clauses:
        by_field.setdefault(c.field, []).append(c)
    pushed: dict[str, list[str]] = {}
    for field, cs in by_field.items():
        target = _PUSH_DOWN.get(field)
        if target and len(cs) == 1 and not cs[0].negate and "*" not in cs[0].values:
            if target == "theme" and not set(cs[0].values) <= set(THEMES):
                continue
            if target in pushed:
                continue
            pushed[target] = list(cs[0].values)
    try:
        return cat.criteria(q=text, bbox=bbox, **pushed)
    except cat.SearchError as exc:
        raise query_error(str(exc)) from None


def _sort(value: str | None, has_text: bool) -> tuple[str, str | None]:
    """(catalogue sort, then a Python sort on name), from CKAN's ``field direction``."""
    default = "score desc, metadata_modified desc"
    first = (value or default).split(",")[0].strip().lower()
    field, _, direction = first.partition(" ")
    direction = direction.strip() or "asc"
    if direction not in ("asc", "desc"):
        raise query_error(f"sort: direction must be asc or desc, not {direction!r}")
    match field:
        case "score" | "rank":
            return ("relevance" if has_text else "-modified"), None
        case "metadata_modified":
            return ("-modified" if direction == "desc" else "modified"), None
        case "title_string" | "title":
            return ("-title" if direction == "desc" else "title"), None
        case "name":
            return "title", direction
    raise query_error(f"sort: cannot sort by {field!r}; use score, metadata_modified, "
                      "title_string or name, with asc or desc")


def _facet_values(field: str, rec: dict[str, Any]) -> list[tuple[str, str]]:
    """(value, display name) pairs a dataset contributes to a facet."""
    match field:
        case "organization":
            return [(rec["org_slug"], rec.get("org_name_en") or rec.get("org_name_fa")
                     or rec["org_slug"])]
        case "tags":
            return [(k, k) for k in dict.fromkeys(rec["keywords"] or [])]
        case "groups":
            return [(rec["theme"], md.THEME_TITLES[rec["theme"]]["en"])]
        case "res_format":
            return [(d.label, d.label) for d in md.DISTRIBUTIONS.values()]
        case "license_id":
            return [(rec["licence"], rec["licence"])]
    return []


def _facets(recs: list[dict[str, Any]], fields: list[str], limit: int, mincount: int
            ) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, Any]]]:
    facets: dict[str, dict[str, int]] = {}
    search_facets: dict[str, dict[str, Any]] = {}
    for field in fields:
        counts: Counter[str] = Counter()
        names: dict[str, str] = {}
        for r in recs:
            for value, display in _facet_values(field, r):
                counts[value] += 1
                names[value] = display
        items = sorted(((v, n) for v, n in counts.items() if n >= mincount),
                       key=lambda vn: (-vn[1], vn[0]))
        if limit >= 0:
            items = items[:limit]
        facets[field] = dict(items)
        search_facets[field] = {"title": field, "items": [
            {"name": v, "display_name": names[v], "count": n} for v, n in items]}
    return facets, search_facets


async def _matched_slugs(ctx: Ctx, criteria: cat.Criteria, sort: str) -> list[str]:
    """Every dataset the catalogue search matches, in its order (read a page at a time)."""
    slugs: list[str] = []
    offset = 0
    while offset <= cat.MAX_OFFSET:
        res = await cat.search(ctx.conn, criteria=criteria, sort=sort, limit=SEARCH_PAGE,
                               offset=offset)
        slugs += [r["slug"] for r in res.datasets]
        offset += SEARCH_PAGE
        if offset >= res.number_matched or not res.datasets:
            break
    return slugs


@action
async def package_search(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Search the datasets. Parameters: q (words, Persian-aware, and field:value clauses),
    fq and fq_list (filters on organization, owner_org, tags, groups/theme, res_format,
    license_id, name, id, metadata_modified, metadata_created), rows (default 10, at most
    1000), start, sort (score, metadata_modified, title_string or name; asc or desc),
    facet.field (a JSON list of organization, tags, groups, res_format, license_id),
    facet.limit (default 50, -1 for all), facet.mincount, fl (fields of each result),
    ext_bbox (minx,miny,maxx,maxy)."""
    unknown = sorted(k for k in p if k not in SEARCH_PARAMS and not k.startswith("ext_"))
    if unknown:
        raise query_error(f"Invalid search parameters: {unknown}")
    rows = min(_int(p, "rows", DEFAULT_ROWS), MAX_ROWS)
    start = _int(p, "start", 0)
    facet_fields = _str_list(p, "facet.field") if _bool(p, "facet", True) else []
    bad = [f for f in facet_fields if f not in FACET_FIELDS]
    if bad:
        raise query_error(f"cannot facet on {bad[0]!r}; facet fields: "
                          f"{', '.join(FACET_FIELDS)}")
    facet_limit = _int(p, "facet.limit", DEFAULT_FACET_LIMIT, minimum=-1)
    mincount = _int(p, "facet.mincount", 1)
    q_clauses, text = parse_filter(_str(p, "q") or "", free_text=True)
    clauses = list(q_clauses)
    for fq in [_str(p, "fq") or "", *_str_list(p, "fq_list")]:
        clauses += parse_filter(fq)[0]
    order, by_name = _sort(_str(p, "sort"), bool(text.strip()))
    criteria = _criteria(text, clauses, _str(p, "ext_bbox"))
    slugs = await _matched_slugs(ctx, criteria, order)
    by_slug = {r["slug"]: r for r in await ctx.records(slugs)}
    recs = [by_slug[s] for s in slugs if s in by_slug]
    recs = [r for r in recs if all(_matches(c, r) for c in clauses)]
    if by_name:
        recs.sort(key=lambda r: r["slug"], reverse=by_name == "desc")
    facets, search_facets = _facets(recs, facet_fields, facet_limit, mincount)
    results = [md.ckan_package(r, ctx.base) for r in recs[start:start + rows]]
    fl = [f for f in re.split(r"[\s,]+", _str(p, "fl") or "") if f]
    if fl and fl != ["*"]:
        results = [{f: pkg.get(f) for f in fl} for pkg in results]
    return {"count": len(recs), "facets": facets, "results": results,
            "sort": _str(p, "sort") or "score desc, metadata_modified desc",
            "search_facets": search_facets}


# --- the endpoint ----------------------------------------------------------------------------


def _help(base: str, name: str) -> str:
    return f"{base}/api/3/action/help_show?name={name}"


async def _call(request: Request, name: str) -> JSONResponse:
    base = base_url(request)
    try:
        fn = ACTIONS.get(name)
        if fn is None:
            if WRITE_ACTION.search(name):
                raise CkanError(403, "Authorization Error",
                                f"Access denied: {name} is not offered; Shahr's catalogue is "
                                "read-only here (datasets are published by its ETL jobs)")
            raise CkanError(400, "Bad Request",
                            f"Bad request - Action name not known: {name}")
        params = await _request_params(request)
        async with request.app.state.pool.connection() as conn:
            result = await fn(Ctx(request, base, conn), params)
    except CkanError as exc:
        return JSONResponse({"help": _help(base, name), "success": False, "error": exc.error()},
                            status_code=exc.status)
    return JSONResponse({"help": _help(base, name), "success": True, "result": result})


@router.api_route("/api/3/action/{name}", methods=["GET", "POST"],
                  summary="CKAN action API (read-only actions)")
async def ckan_action(request: Request, name: str) -> JSONResponse:
    return await _call(request, name)


@router.api_route("/api/action/{name}", methods=["GET", "POST"], include_in_schema=False)
async def ckan_action_unversioned(request: Request, name: str) -> JSONResponse:
    """CKAN answers /api/action/... as /api/3/action/... (ckanapi calls this one)."""
    return await _call(request, name)


@router.get("/api/3", include_in_schema=False)
@router.get("/api", include_in_schema=False)
async def api_version() -> JSONResponse:
    return JSONResponse({"version": API_VERSION})
