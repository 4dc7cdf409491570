"""The Concourse pipeline JSON schema of ``../shared`` (read with its ``oneOf`` as ``anyOf``).

The schema is not committed (it belongs to the shared folder beside the repository); a test that
needs it is skipped, with the reason printed, where that folder is absent. Where the folder is
there but the schema is not, the run is broken, not incomplete: in CI that fails.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.needs import require
from tests.support.paths import REPO_ROOT

SCHEMA = REPO_ROOT.parent / "shared" / "reference" / "concourse-pipeline.schema.json"


def any_of(node: Any) -> Any:
    """The schema's overlapping ``oneOf`` lists read as ``anyOf`` (an identifier is also a string)."""
    if isinstance(node, dict):
        return {("anyOf" if k == "oneOf" else k): any_of(v) for k, v in node.items()}
    if isinstance(node, list):
        return [any_of(v) for v in node]
    return node


def load_schema() -> dict[str, Any]:
    if not SCHEMA.parent.parent.is_dir():
        pytest.skip(f"the Concourse pipeline schema is not at {SCHEMA} (the shared folder beside the repository)")
    require(SCHEMA.exists(), f"the Concourse pipeline schema is missing from {SCHEMA.parent}", fix="restore it")
    return any_of(json.loads(SCHEMA.read_text()))


def schema_errors(schema: dict[str, Any], doc: Any, ref: str | None = None) -> list[str]:
    import jsonschema

    if ref is not None:
        schema = {**schema, "$ref": ref}
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(doc)]
