"""/healthz and /readyz over real HTTP, against ready and unready databases."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from api.app import create_app
from catalog.bootstrap import create_database, drop_database
from catalog.migrate import head_revision
from catalog.settings import Settings


def test_healthz_and_readyz(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    r = http.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert body["migration"] == head_revision()
    assert body["postgis"].startswith("3.")


def test_readyz_is_503_when_not_migrated(server_url: str) -> None:
    from sqlalchemy.engine import make_url

    name = "shahr_test_unmigrated"
    create_database(server_url, name)
    try:
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        with TestClient(create_app(Settings(database_url=url))) as client:
            r = client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["status"] == "not ready"
    finally:
        from catalog.database import get_engine

        get_engine(make_url(server_url).set(database=name).render_as_string(
            hide_password=False)).dispose()
        drop_database(server_url, name)


def test_readyz_is_503_not_500_when_the_database_is_down() -> None:
    settings = Settings(database_url="postgresql://postgres@127.0.0.1:9/nowhere")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert "database unreachable" in r.json()["error"]
        assert client.get("/healthz").status_code == 200


def test_an_unexpected_error_is_a_problem_document_and_the_service_goes_on(
        settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("simulated bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/boom")
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/problem+json"
        assert "simulated" not in r.text  # no internals leak
        assert client.get("/healthz").status_code == 200
