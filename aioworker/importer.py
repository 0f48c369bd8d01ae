"""Import an object from a "pkg.module:attr" string with an error that says what went wrong."""

from __future__ import annotations

import importlib
from typing import Any


class ImportFromStringError(ImportError):
    """The import string could not be resolved; the message says which part failed."""


def import_from_string(target: str) -> Any:
    """Return the object named by ``"pkg.module:attr.sub"``."""
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise ImportFromStringError(f"{target!r} must be in the form 'pkg.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only translate the error when it is the target module itself that is missing;
        # a missing dependency inside the app must surface with its own name.
        if exc.name is not None and module_name.startswith(exc.name):
            raise ImportFromStringError(f"could not import module {module_name!r}") from None
        raise
    obj: Any = module
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise ImportFromStringError(
                f"module {module_name!r} has no attribute {attrs!r}"
            ) from None
    return obj
