"""Building a dataclass from another object that carries the same fields under the same names.

A narrower view of a record (what the manifest keeps of a planned entry, what an S3 client needs of
a source) is its own dataclass; copying field by field by hand forgets the field added later.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def carry_fields(cls: type[T], obj: Any) -> T:
    """A ``cls`` (a dataclass) whose every field is ``obj``'s attribute of the same name."""
    return cls(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)})
