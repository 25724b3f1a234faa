"""What every command module shares: exit codes, `CliError`, the app container, the
console, option checks and JSON output.

Imports of the engine (pydantic, SQLAlchemy, rich, Prefect) happen inside the functions
here and in the command modules, never at module level: the parser imports every command
module, and `nurture --help` should start in ~50 ms rather than the ~800 ms the engine
takes to import."""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from nurture.wiring import App

EXIT_OK, EXIT_FAIL = 0, 1


class CliError(Exception):
    """An expected failure: printed as one sentence, exit status 1."""


def quiet_prefect(verbose: bool = False) -> None:
    """Keep a newcomer's terminal free of Prefect's start-up chatter and telemetry noise.

    Only defaults: anything the user set in the environment wins."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "")


def console(stderr: bool = False) -> Console:
    """The terminal, without rich's guesswork highlighting of numbers and paths."""
    from rich.console import Console  # deferred: rich costs ~30 ms of `nurture --help`

    return Console(stderr=stderr, highlight=False)


def build_app(args: argparse.Namespace | None = None, **overrides: Any) -> App:
    """The app container from the NURTURE_* settings; bad settings are one sentence."""
    # deferred: pydantic, SQLAlchemy and the engine take ~800 ms to import (`--help`)
    from pydantic import ValidationError

    from nurture.settings import Settings
    from nurture.wiring import App

    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: "
                             f"{e['msg']}" for e in exc.errors())
        raise CliError(f"invalid settings: {problems}") from None
    return App(settings)


def parse_as_of(value: str | None, option: str = "--as-of",
                latest: datetime | None = None) -> datetime | None:
    """An ISO time option; out-of-range values (year 1 or 9999 with an offset, anything
    after 2199 or before 1970) are one clear sentence, never an overflow traceback."""
    if value is None:
        return None
    # deferred: the store's limits import SQLAlchemy (`nurture --help` stays fast)
    from nurture.services.ingest import parse_time
    from nurture.store.limits import LATEST_SIMULATED, time_problem

    try:
        at = parse_time(value)
    except ValueError as exc:
        if "range of dates" in str(exc):
            raise CliError(f"{option} {value!r} is outside the range of dates nurture can "
                           "work with (1970-01-01 to 2199-12-31)") from None
        raise CliError(f"{option} {value!r} is not an ISO 8601 date or datetime "
                       "(e.g. 2026-11-23T08:00:00Z)") from None
    problem = time_problem(at, option, latest=latest or LATEST_SIMULATED)
    if problem:
        raise CliError(f"{problem}; nurture works with dates from 1970-01-01"
                       + (" to 2199-12-31" if latest is None else "")) from None
    return at


def in_range(value: float | None, option: str, lo: float, hi: float) -> None:
    """A number option outside what it can mean is one clear sentence (never a traceback
    from deep inside a flow, a socket or an overflow)."""
    if value is None:
        return
    if not (lo <= value <= hi):  # also false for NaN
        raise CliError(f"{option} {value} is out of range: use {lo:g} to {hi:g}")


def print_json(obj: Any) -> None:
    """One JSON document on stdout (datetimes as strings), for scripts."""
    print(json.dumps(obj, default=str, sort_keys=False))
