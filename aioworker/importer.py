"""Import an object from a "pkg.module:attr" string with an error that says what went wrong."""

from __future__ import annotations

import importlib
import os
import traceback
from typing import Any

__all__ = ["ImportFromStringError", "describe_error", "import_from_string"]

# Frames shown after an app's own error: enough to see which line of which module raised it
# and who imported that module, short enough for one line of `check`.
ERROR_FRAMES = 3


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


def describe_error(exc: BaseException, frames: int = ERROR_FRAMES) -> str:
    """One line naming the exception, its message and where it was raised:
    ``KeyError: 'DATABASE_URL' (at deep/app.py:1 <module> -> deep/settings.py:3 <module>)``.

    Our own resolution errors (a missing module or attribute) say everything already and come
    without frames; for the app's own errors, the last `frames` frames outside importlib's
    machinery and aioworker, innermost last, paths relative to the current directory."""
    if isinstance(exc, ImportFromStringError):
        return str(exc)
    text = traceback.format_exception_only(type(exc), exc)[-1].strip()
    if isinstance(exc, SyntaxError) and exc.filename:  # raised by the compiler: no frame
        text += f" ({_short(exc.filename)}:{exc.lineno})"
    shown = [
        f"{_short(f.filename)}:{f.lineno} {f.name}"
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(_MACHINERY)
    ][-frames:]
    return f"{text} (at {' -> '.join(shown)})" if shown else text


# Frames of the import machinery and of aioworker itself say nothing about the app's error.
_MACHINERY = (
    "<frozen ",
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.dirname(os.path.abspath(importlib.__file__ or "")) + os.sep,
)


def _short(path: str) -> str:
    relative = os.path.relpath(path) if os.path.isabs(path) else path
    return path if relative.startswith("..") else relative
