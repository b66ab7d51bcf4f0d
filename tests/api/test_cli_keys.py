"""`shahr keys` as an administrator runs it: a real process and database; the key it prints
works over HTTP until `shahr keys revoke`, and `shahr keys audit` shows what it did."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from publishing_support import SHAHR, bearer, dataset_body, serve, slug

from catalog.settings import Settings

TOKEN = re.compile(r"^shahr_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")


def keys(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHAHR, "keys", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**os.environ, "COLUMNS": "250",
                                        "SHAHR_DATABASE_URL": url})


@pytest.fixture(scope="module")
def base(settings: Settings) -> Iterator[str]:
    with serve(settings) as url:
        yield url


def test_create_use_list_revoke_and_audit(database_url: str, base: str, tmp_path: Path) -> None:
    org = slug("ck-org")
    r = keys("create", "--role", "publisher", "--organisation", org, "--label", "GIS office",
             "--expires-in-days", "30", url=database_url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    m = TOKEN.match(token)
    assert m, r.stdout  # stdout is the secret alone, for scripts
    prefix = m.group(1)
    assert f"publisher for {org}" in r.stderr and "not shown again" in r.stderr

    listed = keys("list", url=database_url, cwd=tmp_path)
    assert listed.returncode == 0
    row = next(ln for ln in listed.stdout.splitlines() if prefix in ln)
    assert "publisher" in row and org in row and "GIS office" in row and "active" in row
    assert "never" in row  # not used yet
    assert token.split("_", 2)[2] not in listed.stdout  # never the secret

    name = slug("ck-data")
    with httpx.Client(base_url=base, timeout=60) as c:
        r1 = c.post("/datasets", headers=bearer(token),
                    json=dataset_body(name, {"slug": org, "name": {"en": "CLI org"}}))
        assert r1.status_code == 201, r1.text
        row = next(ln for ln in keys("list", url=database_url, cwd=tmp_path).stdout.splitlines()
                   if prefix in ln)
        assert row.count("never") == 0  # last used is now known

        revoked = keys("revoke", prefix, url=database_url, cwd=tmp_path)
        assert revoked.returncode == 0 and "revoked" in revoked.stdout
        r2 = c.patch(f"/datasets/{name}", headers=bearer(token), json={"keywords": ["x"]})
        assert r2.status_code == 401 and "revoked" in r2.json()["detail"]

    assert prefix not in keys("list", url=database_url, cwd=tmp_path).stdout
    everything = keys("list", "--all", url=database_url, cwd=tmp_path).stdout
    assert "revoked" in next(ln for ln in everything.splitlines() if prefix in ln)

    audit = keys("audit", "--key", prefix, url=database_url, cwd=tmp_path)
    assert audit.returncode == 0, audit.stderr
    lines = [ln for ln in audit.stdout.splitlines() if prefix in ln]
    assert len(lines) == 2
    assert "PATCH" in lines[0] and "401" in lines[0] and "revoked" in lines[0]  # newest first
    assert "POST /datasets" in lines[1] and "201" in lines[1] and name in lines[1]


def test_an_admin_key_that_never_expires(database_url: str, tmp_path: Path) -> None:
    r = keys("create", "--role", "admin", "--expires-in-days", "0", url=database_url,
             cwd=tmp_path)
    assert r.returncode == 0 and TOKEN.match(r.stdout.strip())
    assert "never expires" in r.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["create", "--role", "owner"], "--role must be one of admin, publisher"),
    (["create", "--role", "publisher"], "--organisation is required"),
    (["create", "--role", "publisher", "--organisation", "Bad Org"], "is not a slug"),
    (["create", "--role", "admin", "--organisation", "x"], "only for publisher keys"),
    (["create", "--role", "admin", "--expires", "2020-01-01"], "--expires must be in the future"),
    (["create", "--role", "admin", "--expires", "next week"], "--expires"),
    (["revoke", "nosuchkey"], "no key 'nosuchkey'"),
    (["audit", "--key", "nosuchkey"], "--key: no key"),
])
def test_mistakes_name_the_parameter(database_url: str, tmp_path: Path, args: list[str],
                                     says: str) -> None:
    r = keys(*args, url=database_url, cwd=tmp_path)
    assert r.returncode != 0
    assert says in r.stderr, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not TOKEN.match(r.stdout.strip())
