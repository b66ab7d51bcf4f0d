"""The `shahr` command: database set-up, ETL jobs, the demo city, and the web service.

Every command prints a short, plain error (no traceback) when input or the database is
wrong, and exits non-zero."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import func, select

from api.cli_analyze import analyze_app
from api.cli_keys import keys_app
from api.cli_worker import worker
from catalog.bootstrap import ensure_postgis, resolve_database
from catalog.database import DatabaseUnavailable, session_scope
from catalog.migrate import current_revision, head_revision, upgrade
from catalog.models import Dataset, EtlRun, RejectedRow
from catalog.settings import Settings, get_settings
from etl.catalogue_manifests import all_stored
from etl.manifest import ManifestError, find_manifests, load_manifest
from etl.runner import RunResult, run_job

app = typer.Typer(help="Shahr: municipal open data, PostGIS and maps.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="The PostGIS database.", no_args_is_help=True)
etl_app = typer.Typer(help="ETL jobs: load source files into the catalogue.",
                      no_args_is_help=True)
demo_app = typer.Typer(help="The synthetic demo city (Shahr-e Nemuneh).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(etl_app, name="etl")
app.add_typer(demo_app, name="demo")
app.add_typer(analyze_app, name="analyze")  # spatial analyses (docs/analytics.md)
app.add_typer(keys_app, name="keys")  # API keys and the audit log (docs/publishing.md)
app.command("worker")(worker)  # the job worker (docs/publishing.md)

console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Turn the errors users can cause into one red paragraph and exit code 1."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DatabaseUnavailable, ManifestError) as exc:
            err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper  # type: ignore[return-value]


def ready_url(settings: Settings | None = None, *, migrate: bool = True) -> str:
    """The database URL, with PostGIS installed and the catalogue migrated to head."""
    settings = settings or get_settings()
    choice = resolve_database(settings)
    ensure_postgis(choice.url)
    if migrate:
        upgrade(choice.url)
    return choice.url


# ---- db ------------------------------------------------------------------------------------

@db_app.command("upgrade")
@friendly
def db_upgrade() -> None:
    """Create the database if needed, install PostGIS, apply migrations."""
    settings = get_settings()
    choice = resolve_database(settings)
    version = ensure_postgis(choice.url)
    upgrade(choice.url)
    console.print(f"database ready ({choice.describe()}), PostGIS {version}, "
                  f"migrations at {current_revision(choice.url)}")


@db_app.command("status")
@friendly
def db_status() -> None:
    """Which database is in use, its PostGIS version and migration state."""
    settings = get_settings()
    choice = resolve_database(settings, start=False)
    version = ensure_postgis(choice.url, install=False)
    current, head = current_revision(choice.url), head_revision()
    console.print(f"database:   {choice.describe()}")
    console.print(f"PostGIS:    {version}")
    state = "up to date" if current == head else "behind: run `shahr db upgrade`"
    console.print(f"migrations: {current or 'none'} (head {head}, {state})")


@db_app.command("url")
@friendly
def db_url() -> None:
    """Print the database URL (for scripts)."""
    console.print(resolve_database(get_settings()).url, soft_wrap=True, highlight=False)


# ---- etl -----------------------------------------------------------------------------------

@etl_app.command("list")
@friendly
def etl_list() -> None:
    """The jobs found in the jobs folders, with their last run."""
    settings = get_settings()
    found = find_manifests(settings.jobs_dirs)
    url = ready_url(settings)
    table = Table("job", "dataset", "last run", "status", "loaded", "rejected", "manifest")
    with session_scope(url) as s:
        for name, path in found.items():
            run = s.scalar(select(EtlRun).where(EtlRun.job_name == name)
                           .order_by(EtlRun.id.desc()).limit(1))
            try:
                slug = load_manifest(path).dataset.slug
            except ManifestError:
                slug = "[red]invalid manifest[/]"
            table.add_row(name, slug, str(run.started_at.strftime("%Y-%m-%d %H:%M")) if run
                          else "never", _status(run.status) if run else "",
                          str(run.rows_loaded) if run else "", str(run.rows_rejected)
                          if run else "", str(path))
    if not found:
        dirs = ", ".join(map(str, settings.jobs_dirs))
        console.print(f"No job manifests in {dirs}. Run `shahr demo generate`, or set "
                      "SHAHR_JOBS_DIRS.")
        return
    console.print(table)


def _status(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "skipped": "cyan"}.get(status, "yellow")
    return f"[{colour}]{status}[/]"


@etl_app.command("run")
@friendly
def etl_run(
    jobs: Annotated[list[str] | None, typer.Argument(help="Job names or manifest paths")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Every job in the jobs folders")] = False,
    force: Annotated[bool, typer.Option(help="Load even if the input is unchanged")] = False,
) -> None:
    """Run ETL jobs (an unchanged input is skipped unless --force)."""
    settings = get_settings()
    found = find_manifests(settings.jobs_dirs)
    if all_jobs:
        paths = list(found.values())
    elif jobs:
        paths = []
        for j in jobs:
            if j in found:
                paths.append(found[j])
            elif Path(j).is_file():
                paths.append(Path(j))
            else:
                known = ", ".join(found) or "none"
                raise ManifestError(f"no job {j!r} (known jobs: {known}); give a job name or "
                                    "a manifest path")
    else:
        err.print("Name jobs to run, or use --all. `shahr etl list` shows them.")
        raise typer.Exit(2)
    manifests = [load_manifest(p) for p in paths]  # all validated before anything runs
    url = ready_url(settings)
    if all_jobs:  # and the datasets created through the API (their manifests are catalogued)
        manifests += all_stored(url, settings, exclude={m.dataset.slug for m in manifests})
    if not manifests:
        err.print("No job manifests found. Run `shahr demo generate` first, or set "
                  "SHAHR_JOBS_DIRS.")
        raise typer.Exit(1)
    results = _run_with_progress(manifests, url, settings, force)
    _print_results(results)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)


def _run_with_progress(manifests: list[Any], url: str, settings: Settings,
                       force: bool) -> list[RunResult]:
    results = []
    columns = (SpinnerColumn(), TextColumn("[bold]{task.fields[job]:<18}"),
               BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stage]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False,
                  disable=not sys.stdout.isatty() and False) as progress:
        for m in manifests:
            task = progress.add_task("", job=m.name, stage="", total=None)

            def on_progress(done: int, total: int | None, task: Any = task) -> None:
                progress.update(task, completed=done, total=total)

            def on_stage(msg: str, task: Any = task) -> None:
                progress.update(task, stage=msg)

            r = run_job(m, url=url, settings=settings, force=force,
                        on_progress=on_progress, on_stage=on_stage)
            final = {"succeeded": f"[green]v{r.version} published[/]",
                     "skipped": "[cyan]unchanged, skipped[/]",
                     "failed": "[red]failed[/]"}[r.status]
            progress.update(task, stage=final, total=r.rows_read or 1,
                            completed=r.rows_read or 1)
            results.append(r)
    return results


def _print_results(results: list[RunResult]) -> None:
    for r in results:
        if r.status == "succeeded":
            console.print(f"[green]✓[/] {r.job}: {r.rows_loaded} loaded, {r.rows_rejected} "
                          f"rejected, {r.rows_repaired} repaired ({r.seconds:.1f} s, run "
                          f"{r.run_id})")
        elif r.status == "failed":
            err.print(f"[red]✗ {r.job}:[/] {r.error}", soft_wrap=True)
        for w in r.warnings:
            console.print(f"  [yellow]warning:[/] {w}", soft_wrap=True)
        if r.rows_rejected:
            console.print(f"  rejected rows: shahr etl rejects {r.run_id}")


@etl_app.command("history")
@friendly
def etl_history(
    dataset: Annotated[str | None, typer.Argument(help="Dataset slug or job name")] = None,
    limit: int = 20,
) -> None:
    """Recent runs, newest first."""
    url = ready_url()
    table = Table("run", "job", "started", "status", "read", "loaded", "rejected", "repaired",
                  "seconds", "note")
    with session_scope(url) as s:
        q = select(EtlRun).order_by(EtlRun.id.desc()).limit(limit)
        if dataset:
            ds_id = s.scalar(select(Dataset.id).where(Dataset.slug == dataset))
            q = q.where((EtlRun.job_name == dataset) | (EtlRun.dataset_id == ds_id))
        for r in s.scalars(q):
            note = (r.error or "; ".join(r.warnings) or "")[:80]
            table.add_row(str(r.id), r.job_name, r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                          _status(r.status), str(r.rows_read), str(r.rows_loaded),
                          str(r.rows_rejected), str(r.rows_repaired),
                          f"{r.duration_s:.1f}" if r.duration_s is not None else "", note)
    console.print(table)


@etl_app.command("rejects")
@friendly
def etl_rejects(run: int, limit: int = 100) -> None:
    """The rows a run could not load, with the reason and the raw values."""
    url = ready_url()
    with session_scope(url) as s:
        r = s.get(EtlRun, run)
        if r is None:
            raise ManifestError(f"no run {run}; `shahr etl history` lists runs")
        total = s.scalar(select(func.count()).select_from(RejectedRow)
                         .where(RejectedRow.run_id == run))
        table = Table("row", "field", "reason", "values")
        for rej in s.scalars(select(RejectedRow).where(RejectedRow.run_id == run)
                             .order_by(RejectedRow.source_row).limit(limit)):
            raw = ", ".join(f"{k}={v}" for k, v in rej.raw.items() if k != "geometry")
            table.add_row(str(rej.source_row), rej.field or "", rej.reason, raw[:120])
    console.print(f"run {run} ({r.job_name}): {total} rejected rows")
    if total:
        console.print(table)


# ---- demo ----------------------------------------------------------------------------------

@demo_app.command("generate")
@friendly
def demo_generate(
    out: Annotated[Path | None, typer.Option(help="Folder (default: .data/demo)")] = None,
    parcels: Annotated[int, typer.Option(help="Number of land-use parcels")] = 6000,
    scale: Annotated[float | None, typer.Option(
        help="Multiply the default size (6,000 parcels); e.g. --scale 167 for 1,000,000")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
    force: bool = False,
) -> None:
    """Write the demo city's source files and job manifests (skipped when up to date)."""
    from etl.demo import generate_city

    settings = get_settings()
    folder = out or settings.jobs_dirs[0]
    if scale is not None:
        if scale <= 0:
            raise ManifestError("--scale must be more than 0")
        parcels = max(500, round(6000 * scale))
    paths = generate_city(folder, seed=seed if seed is not None else settings.demo_seed,
                          parcels=parcels, force=force)
    console.print(f"demo city: {len(paths)} job manifests in {folder}")


@demo_app.command("parcels")
@friendly
def demo_parcels(path: Path, n: Annotated[int, typer.Option("-n", help="Parcels")] = 1_000_000,
                 seed: int = 1402) -> None:
    """Write N synthetic parcels to a GeoPackage (for benchmarks)."""
    from etl.demo import write_parcels

    write_parcels(path, n=n, seed=seed)
    console.print(f"wrote {n} parcels to {path}")


# ---- serve ---------------------------------------------------------------------------------

@app.command("serve")
@friendly
def serve(host: str | None = None, port: int | None = None, workers: int = 1,
          reload: bool = False,
          log_format: Annotated[str | None, typer.Option(
              help="text or json (one JSON object a line); default SHAHR_LOG_FORMAT")] = None,
          log_level: Annotated[str | None, typer.Option(
              help="debug, info, warning or error; default SHAHR_LOG_LEVEL")] = None) -> None:
    """Run the web service."""
    import uvicorn

    from api.logs import cli_log_choice, log_config

    settings = get_settings()
    fmt, level = cli_log_choice(settings, log_format, log_level)
    ready_url(settings)
    host, port = host or settings.host, port or settings.port
    console.print(f"Shahr is serving on [bold]http://{host}:{port}[/] (Ctrl+C stops it)")
    with _metrics_dir(settings, workers):
        # X-Forwarded-For is believed only from SHAHR_TRUSTED_PROXIES (the app does it);
        # the access log is the app's own (one line per request, with its request id).
        uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers,
                    reload=reload, log_config=log_config(fmt, level), log_level=level,
                    access_log=False, proxy_headers=False)


@contextmanager
def _metrics_dir(settings: Settings, workers: int) -> Iterator[None]:
    """With several workers, prometheus_client's multiprocess mode (a folder of counters
    the workers share) lets /metrics count every worker's requests; removed at exit."""
    if workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    folder = (settings.data_dir / "metrics" / str(os.getpid())).resolve()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    app()
