"""Write access over real HTTP: every write endpoint refuses no key, a malformed, unknown,
expired or revoked key (401 + WWW-Authenticate: Bearer) and a publisher of another
organisation (403) and changes nothing then; an admin and the right publisher succeed; every
write attempt is in the audit log. Also the endpoints' own rules: validation, limits, types,
datasets that come from YAML manifests, and the OpenAPI document."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from publishing_support import (
    TITLE_FA,
    bearer,
    csv_bytes,
    dataset_body,
    new_key,
    serve,
    slug,
)

from catalog.database import libpq_dsn
from catalog.settings import Settings
from support import write_manifest

REFUSED = ("none", "malformed", "unknown", "expired", "revoked")


@pytest.fixture(scope="module")
def write_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_upload_mb": 1, "fetch_private_hosts": True,
                                       "worker_heartbeat_s": 1.0})


@pytest.fixture(scope="module")
def base(write_settings: Settings) -> Iterator[str]:
    with serve(write_settings) as url:
        yield url


@pytest.fixture
def client(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def orgs() -> tuple[str, str]:
    return slug("wa-org"), slug("wa-other")


@pytest.fixture(scope="module")
def keys(database_url: str, orgs: tuple[str, str]) -> dict[str, str]:
    org, other = orgs
    return {
        "admin": new_key(database_url, "admin"),
        "publisher": new_key(database_url, "publisher", org),
        "other": new_key(database_url, "publisher", other),
        "expired": new_key(database_url, "publisher", org, state="expired"),
        "revoked": new_key(database_url, "publisher", org, state="revoked"),
        "unknown": "shahr_0123456789ab_" + "x" * 43,
        "malformed": "not-a-shahr-key",
    }


@pytest.fixture(scope="module")
def dataset(base: str, keys: dict[str, str], orgs: tuple[str, str], db: psycopg.Connection
            ) -> Iterator[dict[str, Any]]:
    """A catalogue dataset of `org` with a queued upload run (no worker runs here), and
    the other organisation's dataset. Queued jobs are cancelled at the end."""
    org, other = orgs
    name, theirs = slug("wa-data"), slug("wa-theirs")
    with httpx.Client(base_url=base, timeout=60) as c:
        r = c.post("/datasets", headers=bearer(keys["admin"]), json=dataset_body(
            name, {"slug": org, "name": {"fa": "سازمان آزمون", "en": "Test org"}},
            source={"csv": {"lon": "lon", "lat": "lat"}, "url": "http://127.0.0.1:9/x.csv"}))
        assert r.status_code == 201, r.text
        r = c.post("/datasets", headers=bearer(keys["admin"]), json=dataset_body(
            theirs, {"slug": other, "name": {"en": "Other org"}}))
        assert r.status_code == 201, r.text
        r = c.post(f"/datasets/{name}/uploads", headers=bearer(keys["publisher"]),
                   files={"file": ("stops.csv", csv_bytes(3), "text/csv")})
        assert r.status_code == 202, r.text
    yield {"slug": name, "theirs": theirs, "run": r.json()["run"]["id"]}
    db.execute("""SELECT procrastinate_cancel_job_v1(q.job_id, false, true)
                  FROM catalog.run_requests q JOIN catalog.etl_runs r ON r.id = q.run_id
                  JOIN procrastinate_jobs j ON j.id = q.job_id
                  WHERE r.status = 'queued' AND j.status = 'todo'""")
    db.execute("UPDATE catalog.etl_runs SET status = 'failed', error = 'test cleanup' "
               "WHERE status = 'queued'")


def counts(db: psycopg.Connection, name: str) -> tuple[int, int]:
    """(uploads, runs) of a dataset: what a refused write must not change."""
    row = db.execute("""SELECT (SELECT count(*) FROM catalog.uploads u WHERE u.dataset_id = d.id),
                               (SELECT count(*) FROM catalog.etl_runs r WHERE r.dataset_id = d.id)
                        FROM catalog.datasets d WHERE d.slug = %s""", [name]).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def manifest_title(db: psycopg.Connection, name: str) -> str:
    row = db.execute("""SELECT m.manifest #>> '{dataset,title,en}' FROM catalog.datasets d
                        JOIN catalog.dataset_manifests m ON m.dataset_id = d.id
                        WHERE d.slug = %s""", [name]).fetchone()
    return row[0] if row else ""


# Each write endpoint: how to call it, and what must be unchanged after a refusal.
Call = Callable[[httpx.Client, dict[str, Any], dict[str, str]], httpx.Response]


def _create(c: httpx.Client, ds: dict[str, Any], h: dict[str, str]) -> httpx.Response:
    org = ds["org"]
    return c.post("/datasets", headers=h, json=dataset_body(ds["new_slug"], org))


def _patch(c: httpx.Client, ds: dict[str, Any], h: dict[str, str]) -> httpx.Response:
    return c.patch(f"/datasets/{ds['slug']}", headers=h,
                   json={"title": {"en": f"Changed {uuid.uuid4().hex[:4]}", "fa": "تغییر"}})


def _upload(c: httpx.Client, ds: dict[str, Any], h: dict[str, str]) -> httpx.Response:
    return c.post(f"/datasets/{ds['slug']}/uploads", headers=h,
                  files={"file": ("stops.csv", csv_bytes(4, start=uuid.uuid4().int % 1000),
                                  "text/csv")})


def _url_upload(c: httpx.Client, ds: dict[str, Any], h: dict[str, str]) -> httpx.Response:
    return c.post(f"/datasets/{ds['slug']}/uploads", headers=h,
                  json={"url": "http://127.0.0.1:9/stops.csv"})


def _rerun(c: httpx.Client, ds: dict[str, Any], h: dict[str, str]) -> httpx.Response:
    return c.post(f"/datasets/{ds['slug']}/runs", headers=h, json={"force": True})


WRITES: dict[str, tuple[Call, int]] = {
    "create dataset": (_create, 201), "edit dataset": (_patch, 200), "upload file": (_upload, 202),
    "upload URL": (_url_upload, 202), "re-run": (_rerun, 202),
}


def _target(dataset: dict[str, Any], orgs: tuple[str, str]) -> dict[str, Any]:
    return {**dataset, "org": orgs[0], "new_slug": slug("wa-new")}


def _state(db: psycopg.Connection, ds: dict[str, Any]) -> tuple[Any, ...]:
    exists = db.execute("SELECT count(*) FROM catalog.datasets WHERE slug = %s",
                        [ds["new_slug"]]).fetchone()
    return (counts(db, ds["slug"]), manifest_title(db, ds["slug"]), exists)


@pytest.mark.parametrize("endpoint", list(WRITES))
@pytest.mark.parametrize("refusal", REFUSED)
def test_write_endpoints_refuse_missing_and_bad_keys(
        client: httpx.Client, dataset: dict[str, Any], orgs: tuple[str, str],
        keys: dict[str, str], db: psycopg.Connection, endpoint: str, refusal: str) -> None:
    call, _ = WRITES[endpoint]
    ds = _target(dataset, orgs)
    before = _state(db, ds)
    rid = uuid.uuid4().hex
    headers = {"X-Request-ID": rid, **({} if refusal == "none" else bearer(keys[refusal]))}
    r = call(client, ds, headers)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["www-authenticate"].startswith('Bearer realm="shahr"')
    problem = r.json()
    assert problem["status"] == 401 and problem["title"] == "Unauthorized"
    expected = {"none": "needs an API key", "malformed": "not a Shahr API key",
                "unknown": "not valid", "expired": "has expired", "revoked": "been revoked"}
    assert expected[refusal] in problem["detail"]
    if refusal != "none":
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert _state(db, ds) == before  # nothing changed
    audit = db.execute("SELECT status, key_prefix, key_id, method, result FROM catalog.audit_log "
                       "WHERE request_id = %s", [rid]).fetchall()
    assert len(audit) == 1
    status, prefix, key_id, method, result = audit[0]
    assert status == 401 and method == r.request.method and expected[refusal] in result
    if refusal in ("unknown", "expired", "revoked"):
        assert prefix == keys[refusal].split("_")[1]
    assert (key_id is not None) == (refusal in ("expired", "revoked"))


@pytest.mark.parametrize("endpoint", list(WRITES))
def test_a_publisher_of_another_organisation_is_forbidden(
        client: httpx.Client, dataset: dict[str, Any], orgs: tuple[str, str],
        keys: dict[str, str], db: psycopg.Connection, endpoint: str) -> None:
    call, _ = WRITES[endpoint]
    ds = _target(dataset, orgs)
    before = _state(db, ds)
    rid = uuid.uuid4().hex
    r = call(client, ds, {"X-Request-ID": rid, **bearer(keys["other"])})
    assert r.status_code == 403, r.text
    assert orgs[1] in r.json()["detail"] and orgs[0] in r.json()["detail"]
    assert _state(db, ds) == before
    row = db.execute("SELECT status, role, organisation FROM catalog.audit_log "
                     "WHERE request_id = %s", [rid]).fetchone()
    assert row == (403, "publisher", orgs[1])


@pytest.mark.parametrize("endpoint", list(WRITES))
@pytest.mark.parametrize("who", ["admin", "publisher"])
def test_admin_and_the_right_publisher_may_write(
        client: httpx.Client, dataset: dict[str, Any], orgs: tuple[str, str],
        keys: dict[str, str], db: psycopg.Connection, endpoint: str, who: str) -> None:
    call, status = WRITES[endpoint]
    ds = _target(dataset, orgs)
    uploads, runs = counts(db, ds["slug"])
    rid = uuid.uuid4().hex
    r = call(client, ds, {"X-Request-ID": rid, **bearer(keys[who])})
    assert r.status_code == status, r.text
    if endpoint == "create dataset":
        assert r.headers["location"] == f"/datasets/{ds['new_slug']}"
        assert counts(db, ds["new_slug"]) == (0, 0)
    elif endpoint == "edit dataset":
        assert manifest_title(db, ds["slug"]).startswith("Changed ")
    else:
        run = r.json()["run"]
        assert run["status"] == "queued" and r.headers["location"] == f"/runs/{run['id']}"
        assert counts(db, ds["slug"]) == (uploads + (endpoint == "upload file"), runs + 1)
    row = db.execute("SELECT status, key_prefix, role, target, result, client_ip "
                     "FROM catalog.audit_log WHERE request_id = %s", [rid]).fetchone()
    assert row is not None
    assert row[0] == status and row[1] == keys[who].split("_")[1] and row[2] == who
    assert row[3] == (ds["new_slug"] if endpoint == "create dataset" else ds["slug"])
    assert row[4] == "ok" and row[5] == "127.0.0.1"


def test_reading_runs_and_manifests_needs_a_key_of_the_organisation(
        client: httpx.Client, dataset: dict[str, Any], keys: dict[str, str]) -> None:
    run, name = dataset["run"], dataset["slug"]
    for path in (f"/runs/{run}", f"/runs/{run}/rejects", f"/datasets/{name}/manifest"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=bearer(keys["expired"])).status_code == 401
        assert client.get(path, headers=bearer(keys["other"])).status_code == 403
        for who in ("admin", "publisher"):
            assert client.get(path, headers=bearer(keys[who])).status_code == 200, path
    body = client.get(f"/runs/{run}", headers=bearer(keys["publisher"])).json()
    assert body["status"] == "queued" and body["dataset"] == name
    assert body["request"]["kind"] == "upload"
    assert body["request"]["upload"]["format"] == "csv"
    assert body["request"]["upload"]["original_name"] == "stops.csv"
    rejects = client.get(f"/runs/{run}/rejects", headers=bearer(keys["publisher"])).json()
    assert rejects == {"run": run, "status": "queued", "total": 0, "rejects": [],
                       "links": rejects["links"]}
    assert client.get("/runs/999999999", headers=bearer(keys["admin"])).status_code == 404


def test_reads_are_not_audited_and_last_used_is_kept(
        client: httpx.Client, dataset: dict[str, Any], keys: dict[str, str],
        db: psycopg.Connection) -> None:
    rid = uuid.uuid4().hex
    client.get(f"/runs/{dataset['run']}", headers={"X-Request-ID": rid,
                                                   **bearer(keys["admin"])})
    assert db.execute("SELECT count(*) FROM catalog.audit_log WHERE request_id = %s",
                      [rid]).fetchone() == (0,)
    used = dict(db.execute("SELECT prefix, last_used IS NOT NULL FROM catalog.api_keys").fetchall())
    assert used[keys["admin"].split("_")[1]] is True
    assert used[keys["revoked"].split("_")[1]] is False  # refused keys are not "used"


def test_creating_validates_and_refuses_duplicates(
        client: httpx.Client, dataset: dict[str, Any], orgs: tuple[str, str],
        keys: dict[str, str], db: psycopg.Connection) -> None:
    admin = bearer(keys["admin"])
    r = client.post("/datasets", headers=admin, json=dataset_body("Bad Slug!", orgs[0]))
    assert r.status_code == 400 and "slug" in r.json()["detail"]
    r = client.post("/datasets", headers=admin, json=dataset_body(slug("wa-x"), "no-such-org"))
    assert r.status_code == 400
    assert "'no-such-org' does not exist yet" in r.json()["detail"]
    assert r.json()["parameter"] == "organisation"
    r = client.post("/datasets", headers=admin, json=dataset_body(slug("wa-x"), orgs[0],
                                                                   theme="weather"))
    assert r.status_code == 400 and "theme" in r.json()["detail"]
    r = client.post("/datasets", headers=admin, json=dataset_body(
        slug("wa-x"), orgs[0], refresh="hourly"))
    assert r.status_code == 400 and "refresh" in r.json()["detail"]
    r = client.post("/datasets", headers=admin, json=dataset_body(
        slug("wa-x"), orgs[0], source={"url": "ftp://files.example.org/stops.csv"}))
    assert r.status_code == 400 and r.json()["parameter"] == "source.url"
    assert "only http:// and https://" in r.json()["detail"]
    r = client.post("/datasets", headers=admin, json=dataset_body(dataset["slug"], orgs[0]))
    assert r.status_code == 409 and "exists already" in r.json()["detail"]
    rid = uuid.uuid4().hex
    r = client.post("/datasets", headers={"X-Request-ID": rid, **admin}, json={"slug": "x"})
    assert r.status_code == 400
    row = db.execute("SELECT status, result FROM catalog.audit_log WHERE request_id = %s",
                     [rid]).fetchone()
    assert row is not None and row[0] == 400 and row[1].startswith("invalid request")


def test_a_publisher_may_create_its_own_organisation(
        client: httpx.Client, database_url: str, db: psycopg.Connection) -> None:
    org, name = slug("wa-neworg"), slug("wa-first")
    key = new_key(database_url, "publisher", org)
    r = client.post("/datasets", headers=bearer(key), json=dataset_body(
        name, {"slug": org, "name": {"fa": "سازمان نو", "en": "New org"}},
        description={"en": "First", "fa": "نخست"}, refresh="weekly"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["published"] is False and body["organisation"] == org
    assert body["manifest"]["refresh"] == "weekly"
    row = db.execute("""SELECT d.job_name, d.title_fa, d.current_version_id, o.name_en
                        FROM catalog.datasets d JOIN catalog.organisations o
                        ON o.id = d.organisation_id WHERE d.slug = %s""", [name]).fetchone()
    assert row == (name, TITLE_FA, None, "New org")
    # Unpublished: not in the public catalogue until a run loads it.
    assert client.get(f"/datasets/{name}").status_code == 404


def test_editing_merges_and_refuses_what_cannot_change(
        client: httpx.Client, dataset: dict[str, Any], keys: dict[str, str],
        db: psycopg.Connection) -> None:
    h, name = bearer(keys["publisher"]), dataset["slug"]
    r = client.patch(f"/datasets/{name}", headers=h, json={
        "keywords": ["bus", "اتوبوس"], "source": {"crs": "EPSG:4326"}, "max_rejected": 0.2})
    assert r.status_code == 200, r.text
    m = r.json()["manifest"]
    assert m["dataset"]["keywords"] == ["bus", "اتوبوس"]
    assert m["source"]["crs"] == "EPSG:4326" and m["source"]["csv"]["lon"] == "lon"
    assert m["max_rejected"] == 0.2
    r = client.patch(f"/datasets/{name}", headers=h, json={"source": {"crs": None}})
    assert "crs" not in r.json()["manifest"]["source"]
    assert db.execute("SELECT keywords FROM catalog.datasets WHERE slug = %s",
                      [name]).fetchone() == (["bus", "اتوبوس"],)
    for change, says in (({"slug": "renamed"}, "slug"), ({"organisation": "x"}, "organisation"),
                         ({"source": {"path": "/etc/passwd"}}, "source.path"), ({}, "empty"),
                         ({"theme": "weather"}, "theme"), ({"nonsense": 1}, "nonsense")):
        r = client.patch(f"/datasets/{name}", headers=h, json=change)
        assert r.status_code == 400, (change, r.text)
        assert says in r.json()["detail"]
    assert client.patch("/datasets/no-such-dataset", headers=h,
                        json={"keywords": []}).status_code == 404


def test_datasets_from_yaml_manifests_are_not_edited_through_the_api(
        client: httpx.Client, keys: dict[str, str], database_url: str, settings: Settings,
        tmp_path: Any) -> None:
    from etl.manifest import load_manifest
    from etl.runner import run_job

    (tmp_path / "s.csv").write_bytes(csv_bytes(2))
    name = slug("wa-yaml")
    path = write_manifest(tmp_path, {"path": "s.csv", "csv": {"lon": "lon", "lat": "lat"}},
                          slug=name)
    assert run_job(load_manifest(path), url=database_url, settings=settings).status == "succeeded"
    admin = bearer(keys["admin"])
    for r in (client.patch(f"/datasets/{name}", headers=admin, json={"keywords": ["x"]}),
              client.post(f"/datasets/{name}/uploads", headers=admin,
                          files={"file": ("s.csv", csv_bytes(2), "text/csv")})):
        assert r.status_code == 409
        assert "defined by the job manifest" in r.json()["detail"]


def test_upload_limits_and_types(client: httpx.Client, dataset: dict[str, Any],
                                 keys: dict[str, str], db: psycopg.Connection) -> None:
    h, name = bearer(keys["publisher"]), dataset["slug"]
    before = counts(db, name)
    big = csv_bytes(60_000)  # ~2.4 MB, over the 1 MB limit
    assert len(big) > 2 << 20
    r = client.post(f"/datasets/{name}/uploads", headers=h,
                    files={"file": ("big.csv", big, "text/csv")})
    assert r.status_code == 413 and "SHAHR_MAX_UPLOAD_MB" in r.json()["detail"]

    # Without a Content-Length (chunked), the limit is counted as the body streams in.
    boundary = "shahr-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.csv\"\r\nContent-Type: text/csv\r\n\r\n").encode()

    def chunked() -> Iterator[bytes]:
        yield head
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(f"/datasets/{name}/uploads", content=chunked(), headers={
        **h, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and "1 MB" in r.json()["detail"]

    r = client.post(f"/datasets/{name}/uploads", headers=h,
                    files={"file": ("stops.geojson", b"\x89PNG\r\n\x1a\n" + b"\x00" * 99,
                                    "application/geo+json")})
    assert r.status_code == 415 and "PNG image" in r.json()["detail"]
    r = client.post(f"/datasets/{name}/uploads", headers=h,
                    files={"file": ("stops.geojson", csv_bytes(2), "application/geo+json")})
    assert r.status_code == 415 and "named like GeoJSON but its content is CSV" in r.text
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../etc/cron.d/evil.csv", csv_bytes(2))
    r = client.post(f"/datasets/{name}/uploads", headers=h,
                    files={"file": ("evil.zip", evil.getvalue(), "application/zip")})
    assert r.status_code == 422 and "climbs out of the archive" in r.json()["detail"]
    r = client.post(f"/datasets/{name}/uploads", headers=h, files={
        "attachment": ("stops.csv", csv_bytes(2), "text/csv")})
    assert r.status_code == 400 and "form field `file`" in r.json()["detail"]
    r = client.post(f"/datasets/{name}/uploads", headers=h, data={"note": "no file"},
                    files={"other": ("", b"", "text/plain")})
    assert r.status_code == 400
    r = client.post(f"/datasets/{name}/uploads", headers={**h, "Content-Type": "text/csv"},
                    content=csv_bytes(2))
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = client.post(f"/datasets/{name}/uploads", headers=h, json={"url": "ftp://x.org/a.zip"})
    assert r.status_code == 400 and "only http:// and https://" in r.json()["detail"]
    r = client.post(f"/datasets/{name}/uploads", headers=h, json={"link": "https://x.org/a"})
    assert r.status_code == 400 and "url" in r.json()["detail"]
    assert counts(db, name) == before  # nothing stored, nothing queued


def test_refused_files_leave_nothing_on_disk(client: httpx.Client, dataset: dict[str, Any],
                                             keys: dict[str, str],
                                             write_settings: Settings) -> None:
    name = dataset["slug"]
    folder = (write_settings.data_dir / "sources" / name).resolve()
    before = sorted(p.name for p in folder.rglob("*") if p.is_file())
    r = client.post(f"/datasets/{name}/uploads", headers=bearer(keys["publisher"]),
                    files={"file": ("x.csv", b"%PDF-1.7 not a table", "text/csv")})
    assert r.status_code == 415
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == before


def test_a_csv_upload_needs_the_csv_geometry_options(
        client: httpx.Client, orgs: tuple[str, str], keys: dict[str, str]) -> None:
    name = slug("wa-nocsv")
    body = dataset_body(name, orgs[0])
    body["source"] = {}
    assert client.post("/datasets", headers=bearer(keys["admin"]), json=body).status_code == 201
    r = client.post(f"/datasets/{name}/uploads", headers=bearer(keys["publisher"]),
                    files={"file": ("s.csv", csv_bytes(2), "text/csv")})
    assert r.status_code == 422 and "source.csv" in r.json()["detail"]
    r = client.post(f"/datasets/{name}/runs", headers=bearer(keys["publisher"]))
    assert r.status_code == 409 and "nothing to load yet" in r.json()["detail"]


def test_the_openapi_document_shows_the_bearer_scheme(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    scheme = doc["components"]["securitySchemes"]["apiKey"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    writes = [("/datasets", "post"), ("/datasets/{slug}", "patch"),
              ("/datasets/{slug}/uploads", "post"), ("/datasets/{slug}/runs", "post"),
              ("/runs/{run_id}", "get"), ("/runs/{run_id}/rejects", "get")]
    for path, method in writes:
        op = doc["paths"][path][method]
        assert op["security"] == [{"apiKey": []}], (path, method)
    body = doc["paths"]["/datasets/{slug}/uploads"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert "DatasetIn" in str(doc["paths"]["/datasets"]["post"]["requestBody"])
    # Reading stays public: no security on the catalogue.
    assert "security" not in doc["paths"]["/datasets"]["get"]
