"""``lint-pipeline``: each rule on a good and a bad pipeline, and the command line's contract."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline_bundle.errors import ConfigError
from offline_bundle.lint.pipeline import lint, lint_document, lint_file, lint_paths, parse_var, placeholders
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


def test_a_var_the_params_do_not_define_is_a_note_for_the_credential_manager() -> None:
    # Concourse sets such a pipeline: the value is looked up in the credential manager when it is used.
    report = lint(GOOD, {"settings": {"level": 1}})
    assert report.problems == []
    assert [str(n) for n in report.notes] == [
        "resources[repo].source.uri: ((repo_uri)) is not in the vars files: it must come from the credential manager"
    ]
    doc = mutate(["resources", 1, "source", "other"], "((repo_uri))")
    (note,) = lint(doc, {"settings": {"level": 1}}).notes
    assert str(note).endswith("credential manager (and 1 more place(s))")
    assert lint(GOOD, PARAMS).notes == [] and lint(GOOD).notes == []


def test_a_missing_field_of_a_defined_var_is_still_a_problem() -> None:
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
    assert problems(task, {}) == ["task: task config needs run.path"]
    assert [str(n) for n in lint(task, {}).notes] == [
        "task.params.X: ((x)) is not in the vars files: it must come from the credential manager"
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

    # The secret vars removed from the params file, as operators are told: notes, and exit 0.
    public = tmp_path / "public.yml"
    public.write_text(yaml.safe_dump({"settings": {"level": 3}}))
    proc = run(str(good), "--params", str(public))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"{good}: note: resources[repo].source.uri: ((repo_uri)) is not in the vars files: it must come from the "
        "credential manager",
        f"{good}: OK (2 jobs, 3 resources, 3 resource types; 1 ((var))(s) left to the credential manager)",
    ]
    assert "refuse" not in proc.stdout + proc.stderr

    # A placeholder left in: an error naming the file, line and key; the value itself is not printed.
    params.write_text("repo_uri: https://example/repo.git\nsettings:\n  level: 3\n  token: CHANGEME-abc\n")
    proc = run(str(good), "--params", str(params))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        f"{params}:4: settings.token: still a placeholder (CHANGEME); fill it in, or delete it if the credential "
        "manager holds it"
    ]
    assert proc.stderr.strip() == f"error: {good}: 1 problem(s): 1 placeholder(s) left in the vars files"
    assert "CHANGEME-abc" not in proc.stdout + proc.stderr

    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(mutate(["jobs", 0, "plan", 2, "put"], "bundel")))
    proc = run(str(bad), "--params", str(tmp_path / "none.yml"))
    # The one YAML loader's wording, as for --config and --parts-file: the option, the file, the cause.
    assert proc.returncode == 1
    assert proc.stderr == f"error: cannot read --params {tmp_path / 'none.yml'}: it does not exist\n"
    proc = run(str(bad))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        f"{bad}: jobs[build].plan[2] (put bundel): resource 'bundel' is not declared in resources",
        f"{bad}: jobs[use].plan[0] (get bundle): passed names job 'build', which does not get or put 'bundle'",
    ]
    assert proc.stderr.strip() == f"error: {bad}: 2 problem(s): 2 that Concourse would refuse"


PLACEHOLDER_PARAMS = """\
repo_uri: https://example/repo.git
token: CHANGEME  # SECRET
settings:
  level: 3
  key: |
    -----BEGIN PGP PUBLIC KEY BLOCK-----
    changeme: the public key
    -----END PGP PUBLIC KEY BLOCK-----
digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
commit: '0000000000000000000000000000000000000000'
owner: <your team>
note: TODO
fine: ["Alice <alice@example.com>", sha256:00000000000000000000000000000000000000000000000000000000000000ab, 10000]
words: the exchange meeting is a todo item, changes merged

"""


def test_placeholders_left_in_a_vars_file_are_errors_naming_file_line_and_key(tmp_path: Path) -> None:
    f = tmp_path / "params.yml"
    f.write_text(PLACEHOLDER_PARAMS)
    found = [(p.where, p.message.split(";")[0]) for p in placeholders(str(f))]
    assert found == [
        (f"{f}:2", "token: still a placeholder (CHANGEME)"),
        (f"{f}:7", "settings.key: still a placeholder (CHANGEME)"),
        (f"{f}:9", "digest: still a placeholder (an all-zero sha256 digest)"),
        (f"{f}:10", "commit: still a placeholder (an all-zero SHA-1)"),
        (f"{f}:11", "owner: still a placeholder (a <...> placeholder)"),
        (f"{f}:12", "note: still a placeholder (TODO)"),
    ]
    assert not any("CHANGEME" in p.where for p in placeholders(str(f)))
    pipeline = tmp_path / "p.yml"
    pipeline.write_text(yaml.safe_dump(GOOD))
    report = lint_paths(str(pipeline), [str(f)])
    assert report.problems == [] and len(report.placeholders) == 6
    kind, problems_found, _ = lint_file(str(pipeline), [str(f)])
    assert kind == "pipeline" and len(problems_found) == 6
