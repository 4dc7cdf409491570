"""One YAML loader for every file a user gives (configs, parts files, pipelines, vars, locks).

Strict about keys given twice in one map, as Concourse's own parser is: a config with ``bucket:``
twice would otherwise take the last silently, and a pipeline that ``fly set-pipeline`` refuses
must not look fine here. Errors name the option and the place, never the text around the mark
(it may be a secret).
"""

from __future__ import annotations

from typing import Any

import yaml

from offline_bundle.errors import ConfigError, path_error


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one map."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice in one map", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_where(e: yaml.YAMLError) -> str:
    """`` at line L, column C: problem`` from a YAML error (1-based, as editors count)."""
    mark = getattr(e, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or e.__class__.__name__
    return f"{at}: {problem}"


def parse_yaml(text: str) -> Any:
    """YAML text by the strict rules (``yaml.YAMLError`` for the caller to place)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml(path: str, what: str) -> Any:
    """The YAML (or JSON) file ``path``, given as ``what`` (an option or a role: ``--config``, ``lock``)."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as e:
        raise path_error(e, path, f"cannot read {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML{yaml_where(e)}") from None
