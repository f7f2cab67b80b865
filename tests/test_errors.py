"""The exception tree: every error kubelite raises on purpose and catches elsewhere is a KubeliteError."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kubelite import errors

PACKAGE = Path(__file__).resolve().parent.parent / "kubelite"
#: Errors that never leave their module, named in `errors`' docstring as outside the tree.
LOCAL = {"ProfileError", "DialError", "ApiError", "LogRequestError", "SelectorError", "InvalidParameter", "Expired",
         "TooLarge", "Exceeded", "NotFound", "Refused", "ClientGone", "SpdyError", "BadPorts",
         "JSONPathError"}


def _defined_errors() -> dict[str, str]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and (node.name.endswith("Error") or node.name.endswith("Error_")
                                                   or any(ast.unparse(b).endswith(("Error", "Error_", "Exception"))
                                                          for b in node.bases)):
                found[node.name] = str(path.relative_to(PACKAGE))
    return found


def test_every_error_class_is_in_the_tree_or_named_local():
    import importlib

    for name, where in sorted(_defined_errors().items()):
        if name.startswith("_"):
            continue   # private to its module
        module = importlib.import_module("kubelite." + where.removesuffix(".py").replace("/", "."))
        cls = getattr(module, name)
        if not isinstance(cls, type) or not issubclass(cls, BaseException):
            continue
        if name in LOCAL:
            assert not issubclass(cls, errors.KubeliteError), f"{name} is in the tree: drop it from LOCAL"
            assert name in errors.__doc__, f"errors' docstring should name {name} as local"
        else:
            assert issubclass(cls, errors.KubeliteError), f"{where}: {name} is not a KubeliteError"
            assert name in errors.__doc__, f"errors' docstring does not draw {name} in the tree"


@pytest.mark.parametrize(("name", "base"), [("ImageError", "KubeliteError"), ("SyncError", "KubeliteError"),
                                             ("ConfigError", "KubeliteError"), ("NotFoundError", "RuntimeError_")])
def test_errors_raised_across_layers_live_in_the_errors_module(name, base):
    assert issubclass(getattr(errors, name), getattr(errors, base))


def test_the_old_homes_still_name_the_same_classes():
    from kubelite.core import podconfig
    from kubelite.runtime import images, registry
    from kubelite.sources import gitsync

    assert podconfig.ConfigError is errors.ConfigError
    assert images.ImageError is errors.ImageError
    assert gitsync.SyncError is errors.SyncError
    assert issubclass(registry.PullError, errors.ImageError)
    with pytest.raises(errors.ImageError, match="invalid image reference"):
        images.normalize_reference("Not/Valid")
