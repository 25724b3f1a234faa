"""Loading `campaigns/`: parse every file with its line map, validate against the schema,
then cross-file checks; every problem is collected as `path:line: key.path: message` so a
marketer can fix them all in one pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from nurture.core.config.schema import (
    Campaign,
    Lifecycle,
)
from nurture.core.domain import RECYCLED
from nurture.core.yaml_lines import (
    KeyPath,
    YamlSyntaxError,
    format_path,
    line_for,
    load_yaml_with_lines,
)


@dataclass(frozen=True)
class Problem:
    """One config problem, pointing at the file, line and key a marketer must fix."""

    path: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.key}: {self.message}"


class ConfigError(Exception):
    """The config is invalid; `problems` lists every one found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = str(problems[0]) if problems else "invalid config"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more)

    def report(self) -> str:
        return "\n".join(str(p) for p in self.problems)


@dataclass
class SourceFile:
    """A parsed file plus its line map, used to point problems at lines."""

    path: Path
    display: str
    lines: dict[KeyPath, int]

    def problem(self, key: KeyPath, message: str) -> Problem:
        return Problem(self.display, line_for(self.lines, key), format_path(key), message)


@dataclass(frozen=True)
class Config:
    """Everything the engine needs from `campaigns/`: lifecycle plus campaigns by priority."""

    lifecycle: Lifecycle
    campaigns: tuple[Campaign, ...]
    directory: Path
    sources: dict[str, SourceFile] = field(default_factory=dict, compare=False, repr=False)

    def campaign(self, name: str) -> Campaign | None:
        for c in self.campaigns:
            if c.name == name:
                return c
        return None


def _pydantic_problems(source: SourceFile, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        # aliases are reported by their YAML name; drop pydantic's internal suffixes
        clean: list[str | int] = [p for p in loc if p not in ("[key]",)]
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        problems.append(source.problem(tuple(clean), message))
    # a union failing in several members reports the same place more than once
    unique: dict[tuple[int, str, str], Problem] = {}
    for p in problems:
        unique.setdefault((p.line, p.key, p.message), p)
    return list(unique.values())


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def parse_file(path: Path, model: type[BaseModel], problems: list[Problem]):
    """(model or None, source or None, raw mapping or None): the raw mapping lets the
    cross-file checks still run on a file whose schema errors kept the model from building,
    so one `nurture validate` run reports every problem."""
    display = _display(path)
    try:
        data, lines = load_yaml_with_lines(path)
    except YamlSyntaxError as exc:
        problems.append(Problem(display, exc.line, "(file)", exc.message))
        return None, None, None
    source = SourceFile(path, display, lines)
    if not isinstance(data, dict):
        problems.append(source.problem((), "expected a mapping of keys at the top level"))
        return None, source, None
    try:
        return model.model_validate(data), source, data
    except ValidationError as exc:
        problems.extend(_pydantic_problems(source, exc))
        return None, source, data


def _items(value: Any) -> list[tuple[int, dict]]:
    """The (index, mapping) entries of a raw YAML list, skipping malformed ones (those
    already have schema problems)."""
    if not isinstance(value, list):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)]


def _lifecycle_checks(lifecycle: Lifecycle, lsource: SourceFile, problems: list[Problem]) -> None:
    stages = lifecycle.stage_names
    for i, stage in enumerate(lifecycle.buying_stages):
        if stage.when is None and i != len(lifecycle.buying_stages) - 1:
            problems.append(lsource.problem(("buying_stages", i, "name"),
                                            f"stage {stage.name!r} has no `when`, so it is the "
                                            "default and must be last"))
    if lifecycle.buying_stages[-1].when is not None:
        problems.append(lsource.problem(("buying_stages", len(stages) - 1),
                                        "the last buying stage must be the default (no `when`)"))
    seen_stage: set[str] = set()
    for i, name in enumerate(stages):
        if name in seen_stage:
            problems.append(lsource.problem(("buying_stages", i, "name"),
                                            f"duplicate buying stage {name!r}"))
        seen_stage.add(name)


def _campaign_checks(stages: list[str] | None, campaigns: list[tuple[dict, SourceFile]],
                     problems: list[Problem]) -> None:
    """Checks across tracks, steps and files, on the raw mappings (see `parse_file`)."""
    names: dict[str, str] = {}
    for raw, source in campaigns:
        name = raw.get("name")
        if isinstance(name, str):
            if name in names:
                problems.append(source.problem(("name",), f"campaign name {name!r} is "
                                               f"already used by {names[name]}"))
            names[name] = source.display
        _track_checks(stages, raw, source, problems)


def _track_checks(stages: list[str] | None, raw: dict, source: SourceFile,
                  problems: list[Problem]) -> None:
    """Within one campaign: unique track names, one track per known stage, unique step ids.

    Problems are appended track by track (name, stage, then steps) so their order
    follows the file.
    """
    step_ids: dict[str, KeyPath] = {}
    track_names: set[str] = set()
    track_stages: set[str] = set()
    for ti, track in _items(raw.get("tracks")):
        tname, stage = track.get("name"), track.get("stage")
        if isinstance(tname, str):
            if tname in track_names:
                problems.append(source.problem(("tracks", ti, "name"),
                                               f"duplicate track name {tname!r}"))
            track_names.add(tname)
        if isinstance(stage, str):
            _track_stage_check(stages, stage, track_stages, source, ti, problems)
            track_stages.add(stage)
        _step_id_checks(track, ti, step_ids, source, problems)


def _track_stage_check(stages: list[str] | None, stage: str, track_stages: set[str],
                       source: SourceFile, ti: int, problems: list[Problem]) -> None:
    """A track's stage must be a defined buying stage (or `recycled`) not already served by
    another track of the campaign."""
    if stages is not None and stage not in stages and stage != RECYCLED:
        problems.append(source.problem(
            ("tracks", ti, "stage"),
            f"undefined buying stage {stage!r}; lifecycle.yaml defines "
            f"{', '.join(stages)} (or use `recycled`)"))
    elif stage in track_stages:
        problems.append(source.problem(("tracks", ti, "stage"),
                                       f"another track already serves stage "
                                       f"{stage!r}"))


def _step_id_checks(track: dict, ti: int, step_ids: dict[str, KeyPath], source: SourceFile,
                    problems: list[Problem]) -> None:
    """Step ids are unique per campaign: `step_ids` carries the first key path across tracks."""
    for si, step in _items(track.get("steps")):
        step_id = step.get("id")
        if not isinstance(step_id, str):
            continue
        key = ("tracks", ti, "steps", si, "id")
        if step_id in step_ids:
            problems.append(source.problem(
                key, f"duplicate step id {step_id!r} (first at "
                f"{format_path(step_ids[step_id])}); step ids are unique per campaign"))
        else:
            step_ids[step_id] = key


def load_config(directory: str | Path) -> Config:
    """Load and validate `lifecycle.yaml` and every campaign file in `directory`.

    Raises `ConfigError` with every problem found (not just the first).
    """
    directory = Path(directory)
    problems: list[Problem] = []
    if not directory.is_dir():
        raise ConfigError([Problem(str(directory), 1, "(directory)",
                                   "campaigns directory not found")])
    lifecycle_path = directory / "lifecycle.yaml"
    lifecycle = lsource = None
    if lifecycle_path.exists():
        lifecycle, lsource, _ = parse_file(lifecycle_path, Lifecycle, problems)
    else:
        problems.append(Problem(_display(lifecycle_path), 1, "(file)",
                                "lifecycle.yaml is missing: it defines scoring, buying stages "
                                "and routing"))
    campaigns: list[tuple[Campaign, SourceFile]] = []
    raw_campaigns: list[tuple[dict, SourceFile]] = []
    sources: dict[str, SourceFile] = {}
    if lsource is not None:
        sources["lifecycle"] = lsource
    files = sorted(p for p in directory.iterdir()
                   if p.suffix in (".yaml", ".yml") and p.name not in ("lifecycle.yaml",))
    for path in files:
        campaign, source, raw = parse_file(path, Campaign, problems)
        if raw is not None and source is not None:
            raw_campaigns.append((raw, source))
        if campaign is not None and source is not None:
            campaigns.append((campaign, source))
            sources[campaign.name] = source
    if not files:
        problems.append(Problem(_display(directory), 1, "(directory)",
                                "no campaign files (*.yaml besides lifecycle.yaml)"))
    if lifecycle is not None and lsource is not None:
        _lifecycle_checks(lifecycle, lsource, problems)
    _campaign_checks(lifecycle.stage_names if lifecycle else None, raw_campaigns, problems)
    if problems:
        raise ConfigError(problems)
    ordered = sorted((c for c, _ in campaigns), key=lambda c: (-c.priority, c.name))
    return Config(lifecycle=lifecycle, campaigns=tuple(ordered), directory=directory,
                  sources=sources)
