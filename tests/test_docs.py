"""The README (with the guides under docs/) documents every setting and every CLI command,
as datasette's test_docs does."""

from __future__ import annotations

from pathlib import Path

import typer.main

from api.cli import app
from catalog.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = README + "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))


def test_every_setting_is_documented() -> None:
    missing = [f"SHAHR_{name.upper()}" for name in Settings.model_fields
               if f"SHAHR_{name.upper()}" not in DOCS]
    assert not missing, f"undocumented settings: {missing}"


def test_every_cli_command_is_documented() -> None:
    group = typer.main.get_command(app)
    commands = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        commands += [f"shahr {name} {s}" for s in subs] if subs else [f"shahr {name}"]
    missing = [c for c in commands if f"`{c}" not in DOCS]
    assert len(commands) >= 10
    assert not missing, f"undocumented commands: {missing}"


def test_readme_opens_with_the_two_commands() -> None:
    head = README[:800]
    assert "make demo" in head and "make test" in head
