"""``lint-pipeline``: each rule on a good and a bad pipeline, and the command line's contract."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline_bundle.errors import ConfigError
from offline_bundle.lint import lint_document, lint_file, parse_var
from tests.support.paths import venv_bin

GOOD: dict[str, Any] = {
    "resource_types": [
        {"name": "offline-bundle", "type": "registry-image", "source": {"repository": "r/offline-bundle"}},
        {"name": "wrapped", "type": "offline-bundle", "source": {}},
        {"name": "git", "type": "git", "source": {}},  # overriding a core type with itself
    ],
    "resources": [
        {"name": "repo", "type": "git", "source": {"uri": "((repo_uri))"}},
        {"name": "bundle", "type": "offline-bundle", "source": {"bucket": "b", "secret": "((vault:s3.secret))"}},
        {"name": "other", "type": "wrapped", "source": {}},
    ],
    "var_sources": [{"name": "vault", "type": "vault", "config": {}}],
    "jobs": [
        {
            "name": "build",
            "plan": [
                {"in_parallel": [{"get": "repo", "trigger": True}, {"get": "src", "resource": "other"}]},
                {
                    "task": "make",
                    "config": {
                        "platform": "linux",
                        "image_resource": {"type": "registry-image", "source": {"repository": "busybox"}},
                        "run": {"path": "sh", "args": ["-c", "echo ((.:local)) ((settings.level))"]},
                    },
                },
                {"put": "bundle", "inputs": ["repo"], "params": {"parts": [{"name": "a", "path": "repo"}]}},
            ],
            "on_failure": {"task": "notify", "file": "repo/ci/notify.yml"},
        },
        {
            "name": "use",
            "plan": [
                {"get": "bundle", "passed": ["build"], "trigger": True},
                {"get": "src", "resource": "other", "passed": ["build"]},
                {"do": [{"task": "t", "image": "bundle", "config": {"platform": "linux", "run": {"path": "true"}}}]},
                {"try": {"set_pipeline": "child", "file": "bundle/pipelines/child.yml"}},
                {"load_var": "v", "file": "bundle/version"},
            ],
        },
    ],
    "groups": [{"name": "all", "jobs": ["build", "use"]}],
}
PARAMS = {"repo_uri": "https://example/repo.git", "settings": {"level": 3}}


def problems(doc: Any, params: dict[str, Any] | None = None) -> list[str]:
    return [str(p) for p in lint_document(doc, params)[1]]


def mutate(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


_DELETE = object()


def test_the_good_pipeline_passes_with_and_without_params() -> None:
    assert problems(GOOD) == []
    assert problems(GOOD, PARAMS) == []


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        # each get/put names a declared resource (or resource:)
        (
            ["jobs", 0, "plan", 2, "put"],
            "bundel",
            "jobs[build].plan[2] (put bundel): resource 'bundel' is not declared",
        ),
        (["jobs", 1, "plan", 1, "resource"], "nope", "resource 'nope' is not declared"),
        (["jobs", 0, "plan", 0, "in_parallel", 0, "get"], "rep", "plan[0].in_parallel[0] (get rep)"),
        # each resource type is core or declared
        (["resources", 0, "type"], "gti", "resources[repo]: type 'gti' is neither a core resource type"),
        (["resources", 2, "type"], "unwrapped", "type 'unwrapped' is neither"),
        (["resource_types", 1, "type"], "offline-bundel", "resource_types[wrapped]: type 'offline-bundel'"),
        (["jobs", 0, "plan", 1, "config", "image_resource", "type"], "docker", "image_resource: type 'docker'"),
        # passed names jobs that touch the resource
        (["jobs", 1, "plan", 0, "passed"], ["biuld"], "passed names job 'biuld', which is not declared"),
        (
            ["jobs", 0, "plan", 0, "in_parallel", 0, "passed"],
            ["use"],
            "passed names job 'use', which does not get or put 'repo'",
        ),
        # a task has a platform, an image and a run path
        (["jobs", 0, "plan", 1, "config", "platform"], _DELETE, "task config needs a platform"),
        (["jobs", 0, "plan", 1, "config", "image_resource"], _DELETE, "task needs an image"),
        (["jobs", 0, "plan", 1, "config", "run", "path"], _DELETE, "task config needs run.path"),
        (["jobs", 1, "plan", 2, "do", 0, "image"], _DELETE, "(task t): task needs an image"),
        (["jobs", 0, "on_failure", "file"], _DELETE, "jobs[build].on_failure (task notify): needs config or file"),
        # removed syntax
        (["jobs", 0, "plan", 0], {"aggregate": [{"get": "repo"}]}, "aggregate is no longer supported"),
        (["resources", 0, "source", "uri"], "{{repo_uri}}", "{{...}} params are no longer supported"),
        # names resolve elsewhere too
        (["groups", 0, "jobs"], ["build", "deploy"], "groups[all]: job 'deploy' is not declared"),
        (["resources", 1, "name"], "repo", "the name 'repo' is used twice in resources"),
        (["resources", 1, "source", "secret"], "((vualt:s3.secret))", "names var source 'vualt'"),
        (["jobs", 1, "plan", 3, "try", "file"], _DELETE, "(set_pipeline child): needs a file"),
        (["jobs", 1, "plan", 4], {"gett": "bundle"}, "not a step: it has none of get, put"),
    ],
)
def test_each_rule_names_what_is_wrong(path: list[Any], value: Any, words: str) -> None:
    found = problems(mutate(path, value))
    assert any(words in p for p in found), found


def test_every_var_must_be_defined_when_params_are_given() -> None:
    found = problems(GOOD, {"settings": {"level": 1}})
    assert found == ["resources[repo].source.uri: ((repo_uri)) is not defined in the params"]
    found = problems(GOOD, {"repo_uri": "x", "settings": {"lvl": 1}})
    assert found == [
        "jobs[build].plan[1].config.run.args[1]: ((settings.level)): the params' settings has no field 'level'"
    ]


def test_var_references_are_parsed_as_concourse_writes_them() -> None:
    assert parse_var("name") == parse_var(" name ")
    assert parse_var("source:path.field").source == "source"
    assert parse_var(".:local").source == "."
    assert parse_var('"dotted.name".field').name == "dotted.name"
    assert parse_var("a.b.c").fields == ("b", "c")


def test_task_files_are_linted_as_task_configs(tmp_path: Path) -> None:
    task = {"platform": "linux", "image_resource": {"type": "registry-image", "source": {}}, "run": {"path": "x"}}
    assert lint_document(task)[0] == "task"
    assert problems(task) == []
    del task["run"]["path"]
    task["params"] = {"X": "((x))"}
    assert problems(task, {}) == [
        "task: task config needs run.path",
        "task.params.X: ((x)) is not defined in the params",
    ]


def test_duplicate_keys_and_bad_yaml_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "p.yml"
    f.write_text("jobs:\n- name: a\n  plan: []\n  plan: []\n")
    with pytest.raises(ConfigError, match="given twice"):
        lint_file(str(f))
    f.write_text("jobs: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        lint_file(str(f))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv_bin() / "offline-bundle"), "lint-pipeline", *args], capture_output=True, text=True, check=False
    )


def test_the_command_prints_each_problem_and_exits_non_zero(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(yaml.safe_dump(GOOD))
    params = tmp_path / "params.yml"
    params.write_text(yaml.safe_dump(PARAMS))
    proc = run(str(good), "--params", str(params))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK (2 jobs, 3 resources, 3 resource types; every ((var)) is defined in the params)" in proc.stdout

    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(mutate(["jobs", 0, "plan", 2, "put"], "bundel")))
    proc = run(str(bad), "--params", str(tmp_path / "none.yml"))
    assert proc.returncode == 1 and proc.stderr.startswith("error: --params")
    proc = run(str(bad))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        f"{bad}: jobs[build].plan[2] (put bundel): resource 'bundel' is not declared in resources",
        f"{bad}: jobs[use].plan[0] (get bundle): passed names job 'build', which does not get or put 'bundle'",
    ]
    assert proc.stderr.strip() == f"error: {bad}: 2 problem(s); Concourse would refuse this pipeline"
