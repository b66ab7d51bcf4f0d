"""Citizen participation over HTTP: requests for missing datasets (and support for them),
reports of problems in published data, their triage by publishers, the reports map layer
and a feed per dataset (see docs/participation.md).

Citizens need no account. The pages' forms post to the same URLs as the JSON API, form
encoded, and get a 303 to what they made; programs send JSON and get 201. Every submission
is limited per address (api/participation_guard.py) and checked for the honeypot field;
nothing a citizen sends changes published data. Triage (PATCH, contacts) needs an API key:
the publisher of the dataset's organisation or an admin for reports, any publisher or an
admin for requests; it is audited like every other write (api/auth.py)."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from shapely.geometry import shape
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from api.auth import AuditedRoute, WriterDep, forbidden, require_publisher_of, set_target
from api.html import wants_html
from api.links import base_url
from api.participation_guard import COOKIE, COOKIE_MAX_AGE, refuse_spam, submission_limit, supporter
from api.problems import Problem, bad_request, not_found
from api.routes import participation_pages as pages
from catalog import participation as cat
from catalog.models import PARTICIPATION_STATUSES, REPORT_CATEGORIES, THEMES

public = APIRouter(tags=["participation"])
triage = APIRouter(tags=["participation"], route_class=AuditedRoute)
router = APIRouter()

MAX_TITLE = 200
MAX_TEXT = 5000
MAX_COMMENT = 2000
MAX_EMAIL = 254
MAX_AREA_VERTICES = 1000
MAX_LIMIT = 100
MAX_ID = 2**31 - 1  # ids and version numbers are PostgreSQL integers
FEED_ITEMS = 50
EMAIL = re.compile(r"^[^@\s<>\"']+@[^@\s<>\"']+\.[^@\s<>\"']+$")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
Status = Literal["new", "accepted", "in_progress", "done", "declined"]
Theme = Literal["land-use", "housing", "infrastructure", "traffic", "boundaries"]
Category = Literal["wrong_value", "wrong_location", "missing_feature", "outdated"]
assert set(Status.__args__) == set(PARTICIPATION_STATUSES)  # type: ignore[attr-defined]
assert set(Theme.__args__) == set(THEMES)  # type: ignore[attr-defined]
assert set(Category.__args__) == set(REPORT_CATEGORIES)  # type: ignore[attr-defined]


# ---- bodies --------------------------------------------------------------------------------------

class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _email(v: str | None) -> str | None:
    if v in (None, ""):
        return None
    if len(v) > MAX_EMAIL or not EMAIL.match(v):
        raise ValueError("not an e-mail address (name@example.org)")
    return v


class RequestIn(_Body):
    """A request for a dataset the catalogue lacks."""

    title: str = Field(min_length=3, max_length=MAX_TITLE)
    description: str = Field(min_length=3, max_length=MAX_TEXT)
    theme: Theme
    area: dict[str, Any] | None = Field(default=None, description="GeoJSON Polygon or "
                                        "MultiPolygon (longitude, latitude) the data covers")
    email: str | None = Field(default=None, description="Never shown publicly; only the "
                              "publishers see it, to answer you")
    website: str | None = Field(default=None, description="Leave empty (spam trap)")

    _check_email = field_validator("email")(_email)

    @field_validator("area")
    @classmethod
    def _area(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return None
        if v.get("type") not in ("Polygon", "MultiPolygon"):
            raise ValueError("a GeoJSON Polygon or MultiPolygon")
        try:
            geom = shape(v)
        except Exception as exc:  # shapely's errors for malformed coordinates vary
            raise ValueError(f"not a valid GeoJSON geometry ({exc})") from None
        w, s, e, n = geom.bounds
        if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
            raise ValueError("coordinates must be longitude, latitude (EPSG:4326)")
        count = sum(len(p.exterior.coords) for p in getattr(geom, "geoms", [geom]))
        if count > MAX_AREA_VERTICES:
            raise ValueError(f"at most {MAX_AREA_VERTICES} vertices")
        if not geom.is_valid or geom.is_empty:
            raise ValueError("the polygon is empty or crosses itself")
        return v


class ReportIn(_Body):
    """A problem in a dataset or one of its features."""

    category: Category
    comment: str = Field(min_length=3, max_length=MAX_COMMENT)
    feature_id: int | None = Field(default=None, ge=0, lt=2**62,
                                   description="The feature the report is about")
    location: dict[str, Any] | None = Field(default=None, description="Corrected location: "
                                            "GeoJSON Point (longitude, latitude)")
    email: str | None = Field(default=None, description="Never shown publicly")
    website: str | None = Field(default=None, description="Leave empty (spam trap)")

    _check_email = field_validator("email")(_email)

    @field_validator("location")
    @classmethod
    def _point(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return None
        c = v.get("coordinates")
        if (v.get("type") != "Point" or not isinstance(c, list) or len(c) != 2
                or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in c)):
            raise ValueError('a GeoJSON Point: {"type": "Point", "coordinates": [lon, lat]}')
        if not (-180 <= c[0] <= 180 and -90 <= c[1] <= 90):
            raise ValueError("coordinates must be longitude, latitude (EPSG:4326)")
        return v


class Answer(_Body):
    """A publisher's triage: a new status and/or a public answer."""

    status: Status | None = None
    public_answer: str | None = Field(default=None, max_length=MAX_TEXT)


class ReportAnswer(Answer):
    fixed_version: int | None = Field(default=None, ge=1, le=MAX_ID,
                                      description="The dataset version that fixed what the "
                                      "report says")


# ---- helpers -------------------------------------------------------------------------------------

def _engine(request: Request) -> Any:
    return request.app.state.engine


def _begin(request: Request, fn: Any, **kwargs: Any) -> Any:
    """`fn(conn, **kwargs)` in one transaction of the owner engine, off the event loop; a
    database error is raised as psycopg's own, which api/problems.py answers (a value the
    database refuses, such as a NUL character, is a 400)."""
    def run() -> Any:
        conn: Connection
        try:
            with _engine(request).begin() as conn:
                return fn(conn, **kwargs)
        except DBAPIError as exc:
            if isinstance(exc.orig, Exception):
                raise exc.orig from None
            raise
    return run_in_threadpool(run)


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() in FORM_TYPES


async def _fields(request: Request) -> dict[str, Any]:
    """The submitted fields, JSON or form encoded (form: empty fields are absent)."""
    if _is_form(request):
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str) and v.strip() != ""}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("the body must be a JSON object (Content-Type: application/json) "
                          "or a form (application/x-www-form-urlencoded)") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _invalid(exc: ValidationError) -> Problem:
    errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
              for e in exc.errors()]
    first = errors[0]
    return bad_request(f"{first['field']}: {first['message']}", parameter=first["field"],
                       errors=errors)


def _parse(model: type[BaseModel], fields: dict[str, Any]) -> Any:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _href(request: Request, path: str, params: list[tuple[str, str]] | None = None) -> str:
    query = urlencode(params or [])
    return f"{base_url(request)}{path}" + (f"?{query}" if query else "")


def _request_json(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "links": [
        {"href": _href(request, f"/requests/{item['id']}"), "rel": "self",
         "type": "application/json"},
        {"href": _href(request, f"/requests/{item['id']}/support"), "rel": "support",
         "type": "application/json"}]}


def _report_json(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    links = [{"href": _href(request, f"/reports/{item['id']}"), "rel": "self",
              "type": "application/json"},
             {"href": _href(request, f"/datasets/{item['dataset']}"), "rel": "dataset",
              "type": "application/json"}]
    if item["feature_id"] is not None:
        links.append({"href": _href(request, f"/collections/{item['dataset']}/items/"
                                    f"{item['feature_id']}"), "rel": "item",
                      "type": "application/geo+json"})
    return {**{k: v for k, v in item.items() if k != "feature_point"}, "links": links}


def _page_args(limit: int, offset: int) -> dict[str, int]:
    return {"limit": limit, "offset": offset}


def _form_errors(exc: Problem) -> list[dict[str, str]]:
    return exc.extra.get("errors") or [{"field": exc.extra.get("parameter", ""),
                                        "message": exc.detail}]


# Pages for people at the same URLs (a browser's Accept), and the non-JSON documents.
OR_HTML: dict[int | str, dict[str, Any]] = {200: {"content": {"text/html": {}}}}


def only(media_type: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": "Successful Response", "content": {media_type: {}}}}


def body_of(model: type[BaseModel]) -> dict[str, Any]:
    """The body these routes read themselves (JSON, or a form with the same fields)."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema},
        "application/x-www-form-urlencoded": {"schema": schema}}}}


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
RequestId = Annotated[int, Path(ge=1, le=MAX_ID, description="The request's number")]
ReportId = Annotated[int, Path(ge=1, le=MAX_ID, description="The report's number")]
Offset = Annotated[int, Query(ge=0, le=100_000)]
StatusQ = Annotated[Status | None, Query(description="Only this status")]


# ---- dataset requests ----------------------------------------------------------------------------

@public.get("/requests", summary="Requests for missing datasets, most supported first",
            responses=OR_HTML)
async def list_requests(request: Request, status: StatusQ = None, limit: Limit = 20,
                        offset: Offset = 0) -> Response:
    items, total = await _begin(request, cat.list_requests, status=status, limit=limit,
                                offset=offset)
    body = {"requests": [_request_json(request, i) for i in items], "numberMatched": total,
            "numberReturned": len(items), **_page_args(limit, offset)}
    if wants_html(request):
        return pages.requests_page(request, body, status=status)
    return JSONResponse(body)


@public.get("/requests/new", summary="The form to request a dataset (HTML)",
            response_class=HTMLResponse)
async def new_request_form(request: Request) -> Response:
    return pages.request_form(request, values={}, errors=[])


@public.post("/requests", status_code=201, summary="Request a dataset the catalogue lacks",
             openapi_extra=body_of(RequestIn))
async def create_request(request: Request) -> Response:
    form = _is_form(request)
    fields = await _fields(request)
    if form and isinstance(fields.get("area"), str):
        with contextlib.suppress(json.JSONDecodeError):  # else the model says what is wrong
            fields["area"] = json.loads(fields["area"])
    try:
        refuse_spam(fields)
        submission_limit(request).check(request)
        body: RequestIn = _parse(RequestIn, fields)
    except Problem as exc:
        if form and exc.status == 400:
            return pages.request_form(request, values=fields, errors=_form_errors(exc),
                                      status_code=400)
        raise
    item = await _begin(request, cat.create_request, title=body.title,
                        description=body.description, theme=body.theme, area=body.area,
                        email=body.email)
    where = _href(request, f"/requests/{item['id']}")
    if form:
        return RedirectResponse(where, status_code=303)
    return JSONResponse(_request_json(request, item), status_code=201,
                        headers={"Location": where})


async def _request_or_404(request: Request, request_id: int) -> dict[str, Any]:
    item = await _begin(request, cat.get_request, request_id=request_id)
    if item is None:
        raise not_found(f"no dataset request {request_id}; GET /requests lists them")
    return item  # type: ignore[no-any-return]


@public.get("/requests/{request_id}", summary="One dataset request, its status and answer",
            responses=OR_HTML)
async def get_request(request: Request, request_id: RequestId) -> Response:
    item = await _request_or_404(request, request_id)
    if wants_html(request):
        return pages.request_page(request, _request_json(request, item))
    return JSONResponse(_request_json(request, item))


@public.post("/requests/{request_id}/support", summary="Support a request (once per person)")
async def support(request: Request, request_id: RequestId) -> Response:
    form = _is_form(request)
    if form:
        refuse_spam(await _fields(request))
    submission_limit(request).check(request)
    who, cookie = supporter(request)
    result = await _begin(request, cat.support_request, request_id=request_id, supporter=who)
    if result is None:
        raise not_found(f"no dataset request {request_id}; GET /requests lists them")
    added, count = result
    response: Response
    if form:
        response = RedirectResponse(_href(request, f"/requests/{request_id}"), status_code=303)
    else:
        response = JSONResponse({"request": request_id, "supported": True, "added": added,
                                 "supporters": count})
    if cookie:
        response.set_cookie(COOKIE, cookie, max_age=COOKIE_MAX_AGE, path="/", httponly=True,
                            samesite="lax")
    return response


@triage.patch("/requests/{request_id}", summary="Triage a request: status, public answer "
              "(any publisher or an admin)")
async def answer_request(request: Request, request_id: RequestId, body: Answer,
                         writer: WriterDep) -> JSONResponse:
    set_target(request, f"request:{request_id}")
    item = await _begin(request, cat.answer_request, request_id=request_id,
                        status=body.status, public_answer=body.public_answer)
    if item is None:
        raise not_found(f"no dataset request {request_id}")
    return JSONResponse(_request_json(request, item))


@triage.get("/requests/{request_id}/contact", summary="The e-mail left with a request "
            "(publishers and admins only)")
async def request_contact(request: Request, request_id: RequestId,
                          writer: WriterDep) -> JSONResponse:
    await _request_or_404(request, request_id)
    email = await _begin(request, cat.contact_email, kind="request", item_id=request_id)
    return JSONResponse({"request": request_id, "email": email},
                        headers={"Cache-Control": "no-store"})


# ---- reports -------------------------------------------------------------------------------------

async def _dataset(request: Request, slug: str) -> dict[str, Any]:
    target = await _begin(request, cat.dataset_target, slug=slug)
    if target is None:
        raise not_found(f"no dataset {slug!r}; GET /datasets lists them")
    return target  # type: ignore[no-any-return]


@public.get("/datasets/{slug}/reports", summary="Reports of problems in a dataset",
            responses=OR_HTML)
async def list_reports(request: Request, slug: str, status: StatusQ = None,
                       feature: Annotated[int | None, Query(ge=0, lt=2**62)] = None,
                       limit: Limit = 20, offset: Offset = 0) -> Response:
    target = await _dataset(request, slug)
    items, total = await _begin(request, cat.list_reports, dataset_id=target["id"],
                                status=status,
                                feature_id=None if feature is None else str(feature),
                                limit=limit, offset=offset)
    body = {"dataset": slug, "reports": [_report_json(request, i) for i in items],
            "numberMatched": total, "numberReturned": len(items),
            **_page_args(limit, offset),
            "links": [{"href": _href(request, f"/datasets/{slug}/reports.geojson"),
                       "rel": "reports-layer", "type": "application/geo+json"},
                      {"href": _href(request, f"/datasets/{slug}/feed.atom"),
                       "rel": "alternate", "type": "application/atom+xml"},
                      {"href": _href(request, f"/datasets/{slug}/feed.json"),
                       "rel": "alternate", "type": "application/feed+json"}]}
    if wants_html(request):
        return pages.reports_page(request, body, target, status=status)
    return JSONResponse(body)


@public.get("/datasets/{slug}/reports/new", summary="The form to report a problem (HTML)",
            response_class=HTMLResponse)
async def new_report_form(request: Request, slug: str,
                          feature: Annotated[int | None, Query(ge=0, lt=2**62)] = None
                          ) -> Response:
    target = await _dataset(request, slug)
    values: dict[str, Any] = {} if feature is None else {"feature_id": str(feature)}
    return pages.report_form(request, target, values=values, errors=[])


def _make_report(conn: Connection, *, target: dict[str, Any], body: ReportIn
                 ) -> dict[str, Any]:
    feature_at = None
    if body.feature_id is not None:
        if not target["table_name"]:
            raise bad_request(f"feature_id: {target['slug']} has no published features yet",
                              parameter="feature_id")
        feature_at = cat.feature_point(conn, table=target["table_name"],
                                       feature_id=body.feature_id)
        if feature_at is None:
            raise bad_request(f"feature_id: no feature {body.feature_id} in "
                              f"{target['slug']}", parameter="feature_id")
    location = None
    if body.location is not None:
        lon, lat = body.location["coordinates"]
        location = (float(lon), float(lat))
    return cat.create_report(
        conn, dataset_id=target["id"], version=target["version"],
        feature_id=None if body.feature_id is None else str(body.feature_id),
        feature_at=feature_at or None, category=body.category, comment=body.comment,
        location=location, email=body.email)


@public.post("/datasets/{slug}/reports", status_code=201,
             summary="Report a problem in a dataset or one of its features",
             openapi_extra=body_of(ReportIn))
async def create_report(request: Request, slug: str) -> Response:
    form = _is_form(request)
    target = await _dataset(request, slug)
    fields = await _fields(request)
    if form:  # the page's pin: lon and lat fields
        lon, lat = fields.pop("lon", None), fields.pop("lat", None)
        if lon is not None or lat is not None:
            try:
                fields["location"] = {"type": "Point", "coordinates": [float(lon), float(lat)]}
            except (TypeError, ValueError):
                fields["location"] = {"type": "Point", "coordinates": [lon, lat]}
    try:
        refuse_spam(fields)
        submission_limit(request).check(request)
        body: ReportIn = _parse(ReportIn, fields)
        item = await _begin(request, _make_report, target=target, body=body)
    except Problem as exc:
        if form and exc.status == 400:
            return pages.report_form(request, target, values=fields, errors=_form_errors(exc),
                                     status_code=400)
        raise
    where = _href(request, f"/reports/{item['id']}")
    if form:
        return RedirectResponse(where, status_code=303)
    return JSONResponse(_report_json(request, item), status_code=201,
                        headers={"Location": where})


async def _report_or_404(request: Request, report_id: int) -> dict[str, Any]:
    item = await _begin(request, cat.get_report, report_id=report_id)
    if item is None:
        raise not_found(f"no report {report_id}; GET /datasets/{{slug}}/reports lists them")
    return item  # type: ignore[no-any-return]


@public.get("/reports/{report_id}", summary="One report, its status and the answer",
            responses=OR_HTML)
async def get_report(request: Request, report_id: ReportId) -> Response:
    item = await _report_or_404(request, report_id)
    if wants_html(request):
        return pages.report_page(request, _report_json(request, item))
    return JSONResponse(_report_json(request, item))


@triage.patch("/reports/{report_id}", summary="Triage a report: status, public answer, the "
              "version that fixed it (the dataset's publisher or an admin)")
async def answer_report(request: Request, report_id: ReportId, body: ReportAnswer,
                        writer: WriterDep) -> JSONResponse:
    set_target(request, f"report:{report_id}")
    item = await _report_or_404(request, report_id)
    require_publisher_of(writer, item["organisation"])
    if body.fixed_version is not None:
        target = await _dataset(request, item["dataset"])
        if not await _begin(request, cat.version_exists, dataset_id=target["id"],
                            number=body.fixed_version):
            raise bad_request(f"fixed_version: {item['dataset']} has no version "
                              f"{body.fixed_version}; GET /datasets/{item['dataset']} lists "
                              "its versions", parameter="fixed_version")
    item = await _begin(request, cat.answer_report, report_id=report_id, status=body.status,
                        public_answer=body.public_answer, fixed_version=body.fixed_version)
    return JSONResponse(_report_json(request, item))


@triage.get("/reports/{report_id}/contact", summary="The e-mail left with a report (the "
            "dataset's publisher or an admin)")
async def report_contact(request: Request, report_id: ReportId,
                         writer: WriterDep) -> JSONResponse:
    item = await _report_or_404(request, report_id)
    if not writer.may_publish_for(item["organisation"]):
        raise forbidden(f"this key publishes for organisation {writer.organisation!r}; this "
                        f"report is about a dataset of {item['organisation']!r}")
    email = await _begin(request, cat.contact_email, kind="report", item_id=report_id)
    return JSONResponse({"report": report_id, "email": email},
                        headers={"Cache-Control": "no-store"})


@public.get("/datasets/{slug}/reports.geojson", summary="Where a dataset's reports are (a "
            "map layer)", response_class=Response, responses=only("application/geo+json"))
async def reports_layer(request: Request, slug: str,
                        status: Annotated[Literal["open", "all"], Query(
                            description="open (default): new, accepted, in progress")] = "open"
                        ) -> Response:
    target = await _dataset(request, slug)
    layer = await _begin(request, cat.reports_layer, dataset_id=target["id"],
                         open_only=status == "open")
    return Response(json.dumps(layer, ensure_ascii=False), media_type="application/geo+json")


# ---- feeds ---------------------------------------------------------------------------------------

async def _feed_items(request: Request, slug: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    target = await _dataset(request, slug)
    items, _total = await _begin(request, cat.list_reports, dataset_id=target["id"],
                                 status=None, limit=FEED_ITEMS, offset=0)
    return target, items


@public.get("/datasets/{slug}/feed.json", summary="A dataset's reports and answers as a JSON "
            "Feed 1.1", response_class=Response, responses=only("application/feed+json"))
async def feed_json(request: Request, slug: str) -> Response:
    target, items = await _feed_items(request, slug)
    return Response(json.dumps(pages.json_feed(request, target, items), ensure_ascii=False),
                    media_type="application/feed+json")


@public.get("/datasets/{slug}/feed.atom", summary="A dataset's reports and answers as an "
            "Atom feed", response_class=Response, responses=only("application/atom+xml"))
async def feed_atom(request: Request, slug: str) -> Response:
    target, items = await _feed_items(request, slug)
    return Response(pages.atom_feed(request, target, items),
                    media_type="application/atom+xml; charset=utf-8")


router.include_router(public)
router.include_router(triage)
