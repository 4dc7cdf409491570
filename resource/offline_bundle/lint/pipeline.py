"""``lint-pipeline``: what Concourse checks on ``set-pipeline``, checked before a pipeline travels.

Why: on the air-gapped side a pipeline carried in a bundle is set by a ``set_pipeline`` step, far
from the people who wrote it; a dangling resource name or an undefined ``((var))`` found there costs
a whole transfer. So the carried pipelines (and this project's own) are checked on the connected
side for the mistakes Concourse would refuse: names that do not resolve (resources, resource types,
``passed:`` jobs, var sources), tasks without a platform, an image or a run path, syntax Concourse
removed (``aggregate``, ``{{}}`` params), duplicate names and keys, and — given the params files the
pipeline will be set with — placeholders left in them (``CHANGEME``, ``<...>``, an all-zero digest).
A ``((var))`` the params files do not define is only a note: ``fly set-pipeline`` accepts it and
Concourse asks the credential manager when a build needs it, which is where operators are told to
keep every secret. Field types and unknown keys are what the JSON schema of the pipeline format is
for; this module only needs the parsed YAML.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from offline_bundle.core.yamlfile import StrictLoader, load_yaml
from offline_bundle.errors import BundleError, ConfigError

# The resource types a Linux worker ships with (Concourse 7 and 8): usable without resource_types.
CORE_TYPES = frozenset(
    {
        "bosh-io-release",
        "bosh-io-stemcell",
        "cf",
        "docker-image",
        "git",
        "github-release",
        "hg",
        "mock",
        "pool",
        "registry-image",
        "s3",
        "semver",
        "time",
        "tracker",
    }
)
STEP_KINDS = ("get", "put", "task", "set_pipeline", "load_var", "in_parallel", "do", "try")
HOOKS = ("on_success", "on_failure", "on_abort", "on_error", "ensure")
VAR_RE = re.compile(r"\(\(([^()]*)\)\)")
OLD_PARAM_RE = re.compile(r"\{\{[^{}]*\}\}")


# Values that only an unfilled example holds. An all-zero digest or commit is a real-looking value
# no registry or repository has, so it would fail far from here (on the air-gapped side, a day later).
PLACEHOLDERS = (
    (re.compile(r"\bchange[-_]?me\b", re.IGNORECASE), "CHANGEME"),
    (re.compile(r"<[A-Za-z][A-Za-z0-9 _.:/-]*>"), "a <...> placeholder"),
    (re.compile(r"\bTODO\b"), "TODO"),
    (re.compile(r"\bsha256:0{64}\b"), "an all-zero sha256 digest"),
    (re.compile(r"(?<![0-9A-Fa-f:])0{40}(?![0-9A-Fa-f])"), "an all-zero SHA-1"),
)


class LintError(BundleError):
    """The pipeline has problems: Concourse would refuse it, or its params still hold placeholders."""


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Report:
    """What ``lint-pipeline`` found. ``problems`` (what Concourse would refuse) and ``placeholders``
    (left in the vars files) fail it; ``notes`` (vars left to the credential manager) do not:
    Concourse sets such a pipeline."""

    kind: str
    problems: list[Problem]
    notes: list[Problem]
    doc: Any
    placeholders: list[Problem] = dataclasses.field(default_factory=list)


# ------------------------------------------------------------------------------------------- helpers


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string (keys included) in a parsed YAML value, with where it is (list items by name)."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                yield where, k
            yield from _strings(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{_name_of(v, i)}]")


def _name_of(item: Any, index: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return item["name"]
    return str(index)


@dataclass(frozen=True)
class VarRef:
    source: str | None
    name: str
    fields: tuple[str, ...]


def parse_var(text: str) -> VarRef:
    """``((source:path.field))`` -> its parts; a quoted segment may hold dots or colons."""
    text = text.strip()
    source = None
    prefix = re.match(r'(\.|[^.:"]+):', text)
    if prefix:
        source, text = prefix.group(1).strip(), text[prefix.end() :]
    segments: list[str] = []
    for m in re.finditer(r'"([^"]*)"|([^.]+)', text):
        segments.append(m.group(1) if m.group(1) is not None else m.group(2).strip())
    if not segments:
        segments = [""]
    return VarRef(source, segments[0], tuple(segments[1:]))


# -------------------------------------------------------------------------------------------- linter


class _Linter:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.notes: list[Problem] = []
        self.resources: dict[str, dict[str, Any]] = {}
        self.types: set[str] = set()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.touches: dict[str, set[str]] = {}  # job -> resources it gets or puts
        self.var_sources: set[str] = set()

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

    def _list(self, key: str) -> list[Any]:
        value = self.doc.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(key, "must be a list")
            return []
        return value

    def _named(self, key: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for i, item in enumerate(self._list(key)):
            where = f"{key}[{_name_of(item, i)}]"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                self.add(where, "needs a name")
                continue
            if item["name"] in out:
                self.add(where, f"the name {item['name']!r} is used twice in {key}")
                continue
            out[item["name"]] = item
        return out

    def _check_type(self, where: str, type_name: Any, *, own: str | None = None) -> None:
        if not isinstance(type_name, str) or not type_name:
            self.add(where, "needs a type")
        elif type_name not in CORE_TYPES and (type_name not in self.types or type_name == own):
            self.add(
                where,
                f"type {type_name!r} is neither a core resource type nor declared in resource_types",
            )

    def run_pipeline(self) -> None:
        types = self._named("resource_types")
        self.types = set(types)
        for name, rt in types.items():
            # A declared type may build on another declared type, or override a core type with itself.
            if rt.get("type") != name:
                self._check_type(f"resource_types[{name}]", rt.get("type"), own=name)
        self.resources = self._named("resources")
        for name, res in self.resources.items():
            self._check_type(f"resources[{name}]", res.get("type"))
        self.jobs = self._named("jobs")
        if not self.jobs and "jobs" in self.doc:
            self.add("jobs", "a pipeline needs at least one job")
        for name, job in self.jobs.items():
            self.touches[name] = set()
            self._walk_job(job, name, collect=True)
        for name, job in self.jobs.items():
            self._walk_job(job, name, collect=False)
        self.var_sources = {v["name"] for v in self._list("var_sources") if isinstance(v, dict) and "name" in v}
        self._check_groups()
        self._check_text()

    def _check_groups(self) -> None:
        for i, group in enumerate(self._list("groups")):
            if not isinstance(group, dict):
                continue
            for job in group.get("jobs") or []:
                if isinstance(job, str) and "*" not in job and job not in self.jobs:
                    self.add(f"groups[{_name_of(group, i)}]", f"job {job!r} is not declared")

    def _check_text(self, root: str = "") -> None:
        for where, text in _strings(self.doc, root):
            if OLD_PARAM_RE.search(text):
                self.add(where, "{{...}} params are no longer supported by Concourse; use ((var))")

    def _walk_job(self, job: dict[str, Any], name: str, *, collect: bool) -> None:
        plan = job.get("plan")
        if not isinstance(plan, list):
            if not collect:
                self.add(f"jobs[{name}]", "needs a plan (a list of steps)")
            return
        for i, step in enumerate(plan):
            self._step(step, f"jobs[{name}].plan[{i}]", name, collect)
        for hook in HOOKS:
            if hook in job:
                self._step(job[hook], f"jobs[{name}].{hook}", name, collect)

    def _step(self, step: Any, where: str, job: str, collect: bool) -> None:
        if not isinstance(step, dict):
            if not collect:
                self.add(where, "a step must be a map")
            return
        kinds = [k for k in (*STEP_KINDS, "aggregate") if k in step]
        if "aggregate" in kinds:
            if not collect:
                self.add(where, "aggregate is no longer supported (removed in Concourse 7); use in_parallel")
            for i, sub in enumerate(step["aggregate"] if isinstance(step["aggregate"], list) else []):
                self._step(sub, f"{where}.aggregate[{i}]", job, collect)
        elif not kinds:
            if not collect:
                self.add(where, f"not a step: it has none of {', '.join(STEP_KINDS)}")
        elif len(kinds) > 1:
            if not collect:
                self.add(where, f"one step with several kinds ({', '.join(kinds)})")
        else:
            getattr(self, f"_step_{kinds[0]}")(step, where, job, collect)
        for hook in HOOKS:
            if hook in step:
                self._step(step[hook], f"{where}.{hook}", job, collect)

    def _resource_of(self, step: dict[str, Any], kind: str) -> str | None:
        name = step.get("resource", step.get(kind))
        return name if isinstance(name, str) else None

    def _step_get(self, step: dict[str, Any], where: str, job: str, collect: bool) -> None:
        resource = self._resource_of(step, "get")
        if collect:
            if resource:
                self.touches[job].add(resource)
            return
        where = f"{where} (get {step.get('get')})"
        if resource not in self.resources:
            self.add(where, f"resource {resource!r} is not declared in resources")
            return
        passed = step.get("passed") or []
        if not isinstance(passed, list):
            self.add(where, "passed must be a list of job names")
            return
        for upstream in passed:
            if upstream not in self.jobs:
                self.add(where, f"passed names job {upstream!r}, which is not declared")
            elif resource not in self.touches.get(upstream, set()):
                self.add(where, f"passed names job {upstream!r}, which does not get or put {resource!r}")

    def _step_put(self, step: dict[str, Any], where: str, job: str, collect: bool) -> None:
        resource = self._resource_of(step, "put")
        if collect:
            if resource:
                self.touches[job].add(resource)
            return
        if resource not in self.resources:
            self.add(f"{where} (put {step.get('put')})", f"resource {resource!r} is not declared in resources")

    def _step_task(self, step: dict[str, Any], where: str, job: str, collect: bool) -> None:
        if collect:
            return
        where = f"{where} (task {step.get('task')})"
        config = step.get("config")
        if config is None:
            if not step.get("file"):
                self.add(where, "needs config or file")
            return  # a task file lives in an artifact: lint it on its own (`lint-pipeline TASK.yml`)
        self.check_task_config(config, where, has_image=bool(step.get("image")))

    def check_task_config(self, config: Any, where: str, *, has_image: bool = False) -> None:
        if not isinstance(config, dict):
            self.add(where, "task config must be a map")
            return
        if not config.get("platform"):
            self.add(where, "task config needs a platform (linux)")
        image = config.get("image_resource")
        if image is None and not config.get("rootfs_uri") and not has_image:
            self.add(where, "task needs an image: image_resource in its config, or image: on the step")
        elif isinstance(image, dict):
            self._check_type(f"{where}.image_resource", image.get("type"))
            if not isinstance(image.get("source"), dict):
                self.add(f"{where}.image_resource", "needs a source")
        run = config.get("run")
        if not isinstance(run, dict) or not run.get("path"):
            self.add(where, "task config needs run.path")

    def _step_set_pipeline(self, step: dict[str, Any], where: str, job: str, collect: bool) -> None:
        if not collect and not step.get("file"):
            self.add(f"{where} (set_pipeline {step.get('set_pipeline')})", "needs a file")

    def _step_load_var(self, step: dict[str, Any], where: str, job: str, collect: bool) -> None:
        if not collect and not step.get("file"):
            self.add(f"{where} (load_var {step.get('load_var')})", "needs a file")

    def _step_in_parallel(self, step: dict[str, Any], where: str, job: str, collect: bool) -> None:
        steps = step["in_parallel"]
        if isinstance(steps, dict):
            steps = steps.get("steps")
        if not isinstance(steps, list):
            if not collect:
                self.add(where, "in_parallel needs a list of steps (or steps:)")
            return
        for i, sub in enumerate(steps):
            self._step(sub, f"{where}.in_parallel[{i}]", job, collect)

    def _step_do(self, step: dict[str, Any], where: str, job: str, collect: bool) -> None:
        steps = step["do"]
        if not isinstance(steps, list):
            if not collect:
                self.add(where, "do needs a list of steps")
            return
        for i, sub in enumerate(steps):
            self._step(sub, f"{where}.do[{i}]", job, collect)

    def _step_try(self, step: dict[str, Any], where: str, job: str, collect: bool) -> None:
        self._step(step["try"], f"{where}.try", job, collect)

    def check_vars(self, params: dict[str, Any] | None, var_sources: set[str], root: str = "") -> None:
        missing: dict[str, list[str]] = {}
        for where, text in _strings(self.doc, root):
            for m in VAR_RE.finditer(text):
                ref = parse_var(m.group(1))
                if ref.source is not None:
                    if ref.source != "." and ref.source not in var_sources:
                        self.add(where, f"(({m.group(1)})) names var source {ref.source!r}, not in var_sources")
                    continue
                if not ref.name:
                    self.add(where, "(()) names no var")
                    continue
                if params is None:
                    continue
                if ref.name not in params:
                    missing.setdefault(ref.name, []).append(where)
                    continue
                value = params[ref.name]
                for field in ref.fields:
                    if not isinstance(value, dict) or field not in value:
                        self.add(where, f"(({m.group(1)})): the params' {ref.name} has no field {field!r}")
                        break
                    value = value[field]
        for name, places in missing.items():
            more = f" (and {len(places) - 1} more place(s))" if len(places) > 1 else ""
            message = f"(({name})) is not in the vars files: it must come from the credential manager{more}"
            self.notes.append(Problem(places[0], message))


# ------------------------------------------------------------------------------------------ entries


def is_task_config(doc: Any) -> bool:
    return isinstance(doc, dict) and "jobs" not in doc and any(k in doc for k in ("run", "platform", "image_resource"))


def lint(doc: Any, params: dict[str, Any] | None = None) -> Report:
    """Lint a parsed pipeline or task file against the merged params (None: vars are not checked)."""
    if not isinstance(doc, dict):
        return Report("pipeline", [Problem("pipeline", "must be a map with jobs, resources, resource_types")], [], doc)
    linter = _Linter(doc)
    if is_task_config(doc):
        linter.check_task_config(doc, "task")
        linter._check_text("task")
        linter.check_vars(params, set(), "task")
        return Report("task", linter.problems, linter.notes, doc)
    if "jobs" not in doc:
        linter.add("pipeline", "has no jobs")
    linter.run_pipeline()
    linter.check_vars(params, linter.var_sources)
    return Report("pipeline", linter.problems, linter.notes, doc)


def lint_document(doc: Any, params: dict[str, Any] | None = None) -> tuple[str, list[Problem]]:
    """Lint a parsed pipeline or task file; returns its kind and the problems found (notes left out)."""
    report = lint(doc, params)
    return report.kind, report.problems


def _placeholder_in(text: str) -> tuple[str, int] | None:
    """The first placeholder in ``text``: what it is, and on which line of the text it starts."""
    found = [(m.start(), what) for pattern, what in PLACEHOLDERS if (m := pattern.search(text))]
    if not found:
        return None
    start, what = min(found)
    return what, text.count("\n", 0, start)


def placeholders(path: str) -> list[Problem]:
    """Placeholders left in a vars file, each named by file, line and key (never by its value, which
    may be half a secret)."""
    try:
        with open(path, encoding="utf-8") as f:
            root = yaml.compose(f, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except (OSError, yaml.YAMLError):
        return []  # load_params has already read it; an unreadable file was reported there
    out: list[Problem] = []

    def walk(node: yaml.Node, key: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(v, f"{key}.{k.value}" if key else str(k.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, f"{key}[{i}]")
        elif isinstance(node, yaml.ScalarNode):
            hit = _placeholder_in(str(node.value))
            if hit is not None:
                what, offset = hit
                # A block scalar (| or >) starts on the line after its indicator.
                line = node.start_mark.line + 1 + (offset + 1 if node.style in ("|", ">") else 0)
                why = (
                    f"{key}: still a placeholder ({what}); fill it in, or delete it if the credential manager holds it"
                )
                out.append(Problem(f"{path}:{line}", why))

    if root is not None:
        walk(root, "")
    return out


def load_params(paths: list[str]) -> dict[str, Any]:
    """Merge params files in order (later ones win), as ``fly set-pipeline -l a -l b`` does."""
    merged: dict[str, Any] = {}
    for path in paths:
        doc = load_yaml(path, "--params")
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ConfigError(f"--params {path} must hold a map of var names to values")
        merged.update(doc)
    return merged


def lint_paths(path: str, params_paths: list[str] | None = None) -> Report:
    """Lint a pipeline or task file with the vars files it will be set with."""
    doc = load_yaml(path, "pipeline")
    params = load_params(params_paths) if params_paths else None
    report = lint(doc, params)
    report.placeholders = [p for params_path in params_paths or () for p in placeholders(params_path)]
    return report


def lint_file(path: str, params_paths: list[str] | None = None) -> tuple[str, list[Problem], Any]:
    """Kind, every problem (placeholders included) and the parsed document."""
    report = lint_paths(path, params_paths)
    return report.kind, report.problems + report.placeholders, report.doc
