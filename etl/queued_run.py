"""One queued run, carried out in a child process of `shahr worker` (`python -m
etl.queued_run`, its orders as JSON on stdin): the worker can kill it at the job timeout, and
it dies with the worker. It fetches the URL the run needs (with the upload limits), checks and
keeps the file like an upload, builds the manifest, runs the job, and makes the upload the
dataset's current file when it loaded."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

from catalog.database import session_scope
from catalog.models import Dataset, RunRequest, StoredManifest, Upload
from catalog.settings import Settings
from etl.catalogue_manifests import adopt_upload, incoming_dir, ingest, manifest_for
from etl.manifest import ManifestError
from etl.queue import fail_run
from etl.runner import RunResult, run_job
from etl.source import SourceError
from etl.uploads import Limits, UploadError, fetch

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Be killed when the worker dies (Linux), else watch for it; exit now if it is gone."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl failed")
    except (OSError, AttributeError):
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1)
            os._exit(1)
        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent_pid:
        os._exit(1)


@dataclass
class Orders:
    dataset_id: int
    slug: str
    kind: str
    force: bool
    upload_id: int | None
    fetch_url: str | None
    key_id: int | None


def _orders(url: str, run_id: int) -> Orders:
    with session_scope(url) as s:
        req = s.get(RunRequest, run_id)
        if req is None:
            raise ManifestError(f"run {run_id} has no request record")
        ds = s.get(Dataset, req.dataset_id)
        assert ds is not None
        sm = s.get(StoredManifest, ds.id)
        fetch_url = req.url if req.kind == "url" else None
        if sm is not None and fetch_url is None:
            source_url = sm.manifest.get("source", {}).get("url")
            # A schedule refreshes from the source URL; a re-run of a dataset that has only a
            # URL (nothing uploaded yet) fetches it too.
            if source_url and (req.kind == "schedule"
                               or (req.kind == "rerun" and sm.current_upload_id is None)):
                fetch_url = source_url
        return Orders(ds.id, ds.slug, req.kind, req.force, req.upload_id, fetch_url, req.key_id)


def carry_out(url: str, settings: Settings, run_id: int) -> RunResult | None:
    """Do run `run_id`; every failure a client or source can cause ends in the run's record."""
    try:
        o = _orders(url, run_id)
        upload_id = o.upload_id
        if o.fetch_url:
            got = fetch(o.fetch_url, incoming_dir(settings, o.slug),
                        Limits.from_settings(settings),
                        allow_private=settings.fetch_private_hosts)
            with session_scope(url) as s:
                ds = s.get(Dataset, o.dataset_id)
                assert ds is not None
                up = ingest(s, ds, got.path, settings=settings, original_name=got.filename,
                            kind="url", url=got.url, key_id=o.key_id)
                upload_id = up.id
                req = s.get(RunRequest, run_id)
                assert req is not None
                req.upload_id = up.id
        with session_scope(url) as s:
            ds = s.get(Dataset, o.dataset_id)
            assert ds is not None
            upload = s.get(Upload, upload_id) if upload_id is not None else None
            manifest = manifest_for(s, ds, settings, upload=upload)
    except (UploadError, ManifestError, SourceError) as exc:
        fail_run(url, run_id, str(exc))
        return None
    result = run_job(manifest, url=url, settings=settings, force=o.force, run_id=run_id)
    if upload_id is not None and result.status in ("succeeded", "skipped"):
        with session_scope(url) as s:
            up = s.get(Upload, upload_id)
            if up is not None:
                adopt_upload(s, up)
    return result


def main() -> int:
    orders = json.loads(sys.stdin.read())
    die_with_parent(int(orders["parent_pid"]))
    settings = Settings(**orders["settings"])
    result = carry_out(orders["url"], settings, int(orders["run_id"]))
    if result is not None:
        print(f"run {result.run_id}: {result.status}; read {result.rows_read}, loaded "
              f"{result.rows_loaded}, rejected {result.rows_rejected}"
              + (f"; {result.error}" if result.error else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
