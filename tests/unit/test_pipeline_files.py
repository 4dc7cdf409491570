"""The shipped pipelines, task files and example params: valid for Concourse, and as README promises.

The schema is third-party data kept beside the project (``<repo>/../shared``); without it the schema
test is skipped with the reason shown, and lint (this project's own checks) still runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline_bundle.lint.pipeline import VAR_RE, lint_file, lint_paths, parse_var
from tests.support.paths import REPO_ROOT
from tests.support.schema import load_schema, schema_errors

PIPELINES = REPO_ROOT / "pipelines"
CREATE = PIPELINES / "create-offline-pinned-pipelines.yml"
UNPACK = PIPELINES / "unpack-pcf-pipelines-combined.yml"
PAIRS = [(CREATE, PIPELINES / "create-offline-pinned-pipelines-params.example.yml")]
PAIRS += [(UNPACK, PIPELINES / "unpack-pcf-pipelines-combined-params.example.yml")]
TASKS = sorted((PIPELINES / "tasks").glob("*.yml"))
SECRET_WORDS = ("token", "secret", "private_key", "password", "passphrase")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return load_schema()


def errors(schema: dict[str, Any], doc: Any, ref: str | None = None) -> list[str]:
    return schema_errors(schema, doc, ref)


def steps(plan: list[Any]) -> list[dict[str, Any]]:
    out = []
    for step in plan:
        out.append(step)
        for key in ("in_parallel", "do"):
            if key in step:
                sub = step[key]["steps"] if isinstance(step[key], dict) else step[key]
                out.extend(steps(sub))
        if "try" in step:
            out.extend(steps([step["try"]]))
    return out


def all_steps(pipeline: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job["name"], s) for job in pipeline["jobs"] for s in steps(job["plan"])]


def var_names(doc: Any) -> set[str]:
    text = json.dumps(doc)
    return {parse_var(m.group(1)).name for m in VAR_RE.finditer(text)}


@pytest.mark.parametrize("pipeline", [CREATE, UNPACK], ids=lambda p: p.name)
def test_pipelines_validate_against_the_concourse_schema(schema: dict[str, Any], pipeline: Path) -> None:
    assert errors(schema, load(pipeline)) == []


@pytest.mark.parametrize("task", TASKS, ids=lambda p: p.name)
def test_task_files_validate_against_the_task_schema(schema: dict[str, Any], task: Path) -> None:
    assert errors(schema, load(task), "#/definitions/task_config") == []


def test_the_schema_check_does_catch_old_syntax(schema: dict[str, Any]) -> None:
    old = {"jobs": [{"name": "j", "plan": [{"aggregate": [{"get": "x"}]}]}]}
    assert errors(schema, old)


@pytest.mark.parametrize(("pipeline", "params"), PAIRS, ids=lambda p: p.name)
def test_pipelines_pass_lint_with_their_example_params(pipeline: Path, params: Path) -> None:
    """Every var defined, nothing Concourse would refuse; what is left are the example's placeholders,
    which lint flags on exactly the lines an operator must fill in."""
    report = lint_paths(str(pipeline), [str(params)])
    assert report.kind == "pipeline" and [str(p) for p in report.problems + report.notes] == []
    lines = params.read_text().splitlines()
    marked = [i + 1 for i, ln in enumerate(lines) if "CHANGEME" in ln or re.search(r"sha256:0{64}", ln)]
    assert marked and [int(p.where.rsplit(":", 1)[1]) for p in report.placeholders] == marked


@pytest.mark.parametrize(("pipeline", "params"), PAIRS, ids=lambda p: p.name)
def test_pipelines_lint_clean_with_the_secrets_left_to_the_credential_manager(
    pipeline: Path, params: Path, tmp_path: Path
) -> None:
    """As the example tells operators: the SECRET lines deleted, the rest filled in."""
    secret = {ln.split(":")[0] for ln in params.read_text().splitlines() if "# SECRET" in ln and ln[:1].isalpha()}
    filled = {
        k: re.sub(r"sha256:0{64}", "sha256:" + "ab" * 32, v.replace("CHANGEME", "filled-in"))
        if isinstance(v, str)
        else v
        for k, v in load(params).items()
        if k not in secret
    }
    mine = tmp_path / "params.yml"
    mine.write_text(yaml.safe_dump(filled))
    report = lint_paths(str(pipeline), [str(mine)])
    assert report.problems == [] and report.placeholders == []
    left = sorted(n.message.split("))")[0].removeprefix("((") for n in report.notes)
    assert left == sorted(secret)


@pytest.mark.parametrize("task", TASKS, ids=lambda p: p.name)
def test_task_files_pass_lint(task: Path) -> None:
    kind, problems, _ = lint_file(str(task))
    assert kind == "task" and [str(p) for p in problems] == []


@pytest.mark.parametrize(("pipeline", "params"), PAIRS, ids=lambda p: p.name)
def test_example_params_hold_exactly_the_vars_and_mark_the_secrets(pipeline: Path, params: Path) -> None:
    used = var_names(load(pipeline))
    defined = load(params)
    assert sorted(set(defined) - used) == [], "example params define vars the pipeline does not use"
    lines = params.read_text().splitlines()
    for name in defined:
        if any(w in name for w in SECRET_WORDS) and not name.endswith("_access_key_id"):
            line = next(ln for ln in lines if ln.startswith(f"{name}:"))
            assert "SECRET" in line, f"{name} is a secret: mark it as coming from the credential manager"


@pytest.mark.parametrize("pipeline", [CREATE, UNPACK], ids=lambda p: p.name)
def test_every_put_names_its_inputs(pipeline: Path) -> None:
    puts = [(job, s) for job, s in all_steps(load(pipeline)) if "put" in s]
    assert puts
    for job, step in puts:
        assert isinstance(step.get("inputs"), list), f"{job}: put {step['put']} needs an explicit inputs list"
        for value in json.dumps(step.get("params", {})).split('"'):
            head = value.split("/", 1)[0]
            if "/" in value and not value.startswith("((") and head not in step["inputs"]:
                pytest.fail(f"{job}: put {step['put']} refers to {value} but inputs has no {head}")


@pytest.mark.parametrize("pipeline", [CREATE, UNPACK], ids=lambda p: p.name)
def test_no_floating_tags_and_the_task_image_is_pinned_by_digest(pipeline: Path) -> None:
    doc = load(pipeline)
    text = pipeline.read_text()
    assert "latest" not in text
    for rt in doc["resource_types"]:
        assert re.fullmatch(r"\(\([a-z_]+_tag\)\)", rt["source"]["tag"]), rt["name"]
    if pipeline == CREATE:
        task_image = next(r for r in doc["resources"] if r["name"] == "task-image")
        assert task_image["version"] == {"digest": "((task_image_digest))"}
        get = next(s for _, s in all_steps(doc) if s.get("get") == "task-image")
        assert get["params"] == {"format": "oci"}


def test_every_image_of_the_air_gapped_side_comes_from_the_internal_registry() -> None:
    doc = load(UNPACK)
    params = load(PAIRS[1][1])
    images = [rt["source"] for rt in doc["resource_types"]]
    images += [r["source"] for r in doc["resources"] if r["type"] == "registry-image"]
    images += [s["config"]["image_resource"]["source"] for _, s in all_steps(doc) if "config" in s]
    assert len(images) == 4  # the resource type, task-image, and the two publish tasks
    for source in images:
        repository = params[parse_var(source["repository"][2:-2]).name]
        assert repository.startswith("registry.airgapped.example/"), repository
        assert source["ca_certs"] == ["((internal_registry_ca_certificate))"]


@pytest.mark.parametrize(
    ("setter", "publisher", "resource"),
    [("set-pipelines", "publish-bundle", "bundle"), ("set-pinned-pipelines", "publish-pinned-bundle", "pinned-bundle")],
)
def test_the_set_pipelines_jobs_wait_for_a_human(setter: str, publisher: str, resource: str) -> None:
    doc = load(UNPACK)
    job = next(j for j in doc["jobs"] if j["name"] == setter)
    gets = [s for s in steps(job["plan"]) if "get" in s]
    assert gets and not any(s.get("trigger") for s in gets)
    assert [s["passed"] for s in gets] == [[publisher]]
    assert any("set_pipeline" in s for s in steps(job["plan"]))
    assert not any("fly" in json.dumps(s) for s in steps(job["plan"]))
    publish = next(j for j in doc["jobs"] if j["name"] == publisher)
    assert publish["plan"][0] == {"get": resource, "trigger": True, "params": {"skip_download": True}}


def parts_always_put(job: dict[str, Any]) -> set[str]:
    """The part names every bundle this job puts holds: its literal parts, or, when the parts come from
    fetch's parts.json (a load_var), the parts its fetch task always adds (``--also-part NAME=``)."""
    put = next(s for s in steps(job["plan"]) if "put" in s and "parts" in s.get("params", {}))
    parts = put["params"]["parts"]
    if isinstance(parts, list):
        return {p["name"] for p in parts}
    assert parts == "((.:fetched-parts))", parts
    script = json.dumps([s["config"] for s in steps(job["plan"]) if s.get("task") == "fetch"])
    return set(re.findall(r"--also-part [\\\"]*([a-z0-9-]+)=", script))


def test_each_air_gapped_get_asks_only_for_parts_every_bundle_of_its_resource_has() -> None:
    """The class of bug where two connected jobs put different parts to one bundle resource: then a
    far-side get with ``parts:`` fails on the other job's bundles. Each bundle name must have one
    connected job, and each far-side get ask only for parts that job always puts."""
    create, unpack = load(CREATE), load(UNPACK)
    makers: dict[str, list[dict[str, Any]]] = {}
    for job in create["jobs"]:
        for s in steps(job["plan"]):
            res = next((r for r in create["resources"] if r["name"] == s.get("put")), None)
            if res is not None and res["type"] == "offline-bundle":
                makers.setdefault(res["source"]["name"], []).append(job)
    assert sorted(makers) == ["((bundle_name))", "((pinned_bundle_name))"]
    assert all(len(jobs) == 1 for jobs in makers.values()), "one connected job per bundle name"
    bundles = {r["name"]: r for r in unpack["resources"] if r["type"] == "offline-bundle"}
    assert sorted(r["source"]["name"] for r in bundles.values()) == sorted(makers)
    asked = 0
    for job_name, s in all_steps(unpack):
        if s.get("get") in bundles and "parts" in s.get("params", {}):
            (maker,) = makers[bundles[s["get"]]["source"]["name"]]
            missing = set(s["params"]["parts"]) - parts_always_put(maker)
            assert not missing, f"{job_name}: get {s['get']} asks for {missing}, not in every {maker['name']} bundle"
            asked += 1
    assert asked == 3  # push-task-image, set-pipelines, set-pinned-pipelines


def test_the_bundle_carries_one_part_per_artifact_with_its_destination() -> None:
    doc = load(CREATE)
    put = next(s for _, s in all_steps(doc) if s.get("put") == "bundle")
    parts = {p["name"]: p for p in put["params"]["parts"]}
    assert sorted(parts) == ["elastic-runtime", "ops-manager", "pipelines", "stemcells", "task-image"]
    assert all(p["destination"].endswith("/") for p in parts.values())
    gets = {s["get"] for _, s in all_steps(doc) if "get" in s}
    assert set(parts) <= gets and set(put["inputs"]) == gets | {"bundle-version"}
    assert put["params"]["version_file"] == "bundle-version/version"
