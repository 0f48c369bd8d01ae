"""The settings' metadata drives validation, and the generated files match the committed ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from aioworker.config import (
    LOG_LEVELS,
    ConfigError,
    GroupSettings,
    HttpSettings,
    MetricsSettings,
    ServerSettings,
    load,
    meta,
)
from aioworker.config.reference import FILES, render_reference
from aioworker.http.server import run as run_app

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = (ServerSettings, GroupSettings, HttpSettings, MetricsSettings)
WEB = "[groups.web]\napp = 'examples.app:app'\nlisten = 'http://127.0.0.1:8000'\n"


def fields() -> list[tuple[type, dataclasses.Field[Any]]]:
    return [(cls, f) for cls in SECTIONS for f in dataclasses.fields(cls)]


@pytest.mark.parametrize(("cls", "f"), fields(), ids=lambda v: getattr(v, "name", ""))
def test_every_setting_has_a_doc_and_consistent_metadata(cls: type, f: Any) -> None:
    m = meta(f)
    assert m.doc
    assert "\n" not in m.doc
    assert "(0 =" not in m.doc, "the meaning of 0 goes in zero="
    if m.restart_if:
        assert isinstance(getattr(cls(), m.restart_if), bool)
    for choice in m.choices:
        assert choice == choice.lower()  # matched case-insensitively
    if m.zero:
        assert m.minimum == 0


def _table_line(f: dataclasses.Field[Any], value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    if isinstance(f.default, float):
        text = repr(float(value))
    table = "[server]\n" if f in dataclasses.fields(ServerSettings) else ""
    line = f"{f.name} = {text}\n"
    return table + line + WEB if table else WEB + line


def bounded() -> list[Any]:
    cases = []
    for cls, f in fields():
        m = meta(f)
        bad: Any
        good: Any
        if cls is MetricsSettings or not (
            m.choices or m.minimum is not None or m.above is not None
        ):
            continue
        if m.choices:
            bad, good = "nope", m.choices[-1].upper()
        elif m.minimum is not None:
            bad, good = m.minimum - 1, m.minimum
        else:
            bad, good = m.above, (m.above or 0) + 1
        cases.append(pytest.param(f, bad, good, id=f.name))
    return cases


@pytest.mark.parametrize(("f", "bad", "good"), bounded())
def test_choices_and_bounds_come_from_the_metadata(
    tmp_path: Path, f: dataclasses.Field[Any], bad: Any, good: Any
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_table_line(f, bad))
    with pytest.raises(ConfigError, match=rf"\.{f.name}: (must|'nope' is not)"):
        load(path)
    path.write_text(_table_line(f, good))
    load(path)


def test_log_levels_are_the_choices_of_log_level_and_run_checks_them() -> None:
    log_level = {f.name: f for f in dataclasses.fields(ServerSettings)}["log_level"]
    assert meta(log_level).choices == LOG_LEVELS
    assert ServerSettings().log_level in LOG_LEVELS
    # run() refuses a level before it opens anything (logging would reject it much later).
    with pytest.raises(ValueError, match="'loud' is not one of debug, info"):
        run_app(object(), log_level="loud")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(FILES))
def test_generated_files_are_up_to_date(name: str) -> None:
    committed = (ROOT / name).read_text()
    assert committed == FILES[name](), f"{name} is out of date with the settings: run scripts/docs"


@pytest.mark.parametrize(
    ("row", "restart"),
    [
        pytest.param('| `listen` | string | `""` |', "yes", id="group-listen"),
        pytest.param('| `user` | string | `""` |', "yes", id="user"),
        pytest.param("| `count` | integer | `0` |", "no", id="count"),
        pytest.param('| `app` | string | `""` |', "with preload", id="app"),
        pytest.param("| `max_headers` | integer | `100` |", "no", id="limit"),
    ],
)
def test_reference_rows_show_type_default_and_restart(row: str, restart: str) -> None:
    assert f"{row} {restart} |" in render_reference()
