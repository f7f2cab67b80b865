"""The image store's modules: each imports only those below it, and the GC's rules as a table.

The store is split by responsibility (`kubelite.runtime.images`: records and limits at the bottom,
the layer writer, the unpacker and the archive reader above them, the store on top); image
references are `kubelite.runtime.reference`'s and import nothing of the store. The image GC's rules
(`garbage`) are plain functions over images, usage figures and a way to delete one image.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kubelite.runtime.images import garbage
from kubelite.runtime.images.records import Image, ImageConfig

RUNTIME = Path(__file__).resolve().parent.parent / "kubelite" / "runtime"

#: What each module of the image package may import from kubelite (transitively), besides the
#: errors, `statefiles`, `layout` and `runtime.reference`.
BELOW = {
    "records": set(),
    "limits": set(),
    "garbage": {"records"},
    "tarsplit": set(),
    "layerwriter": {"limits", "records", "tarsplit"},
    "unpacking": {"layerwriter", "limits", "records", "tarsplit"},
    "archives": {"records"},
    "saving": {"records", "tarsplit"},
    "store": {"archives", "garbage", "layerwriter", "limits", "records", "saving", "tarsplit", "unpacking"},
    "__init__": {"archives", "garbage", "layerwriter", "limits", "records", "saving", "store", "tarsplit",
                 "unpacking"},
}
COMMON = {"kubelite.errors", "kubelite.statefiles", "kubelite.layout", "kubelite.runtime.reference"}


def imports_of(path: Path) -> set[str]:
    """The kubelite modules a file imports: `from kubelite.x import y` counts y when it is a module, and x
    when it also takes a name that is not one (the package's own names, not just a way to its modules)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kubelite"):
            modules = {f"{node.module}.{a.name}" for a in node.names if module_path(f"{node.module}.{a.name}")}
            found |= modules
            if len(modules) < len(node.names):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kubelite")}
    return found


def module_path(name: str) -> Path | None:
    base = RUNTIME.parent.parent / Path(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def transitive_imports(name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        path = module_path(todo.pop())
        for imported in imports_of(path) if path is not None else ():
            if imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


def test_image_references_import_nothing_of_the_image_store():
    reached = transitive_imports("kubelite.runtime.reference")
    assert not {m for m in reached if m.startswith("kubelite.runtime.images")}, reached
    assert reached <= {"kubelite.errors"}


def test_every_module_of_the_image_store_is_in_the_table():
    assert {p.stem for p in (RUNTIME / "images").glob("*.py")} == set(BELOW)


@pytest.mark.parametrize("module", sorted(BELOW))
def test_each_module_of_the_image_store_imports_only_modules_below_it(module):
    name = "kubelite.runtime.images" if module == "__init__" else f"kubelite.runtime.images.{module}"
    allowed = {f"kubelite.runtime.images.{m}" for m in BELOW[module]} | COMMON
    reached = transitive_imports(name)
    assert reached <= allowed, sorted(reached - allowed)


def test_the_import_check_sees_a_module_imported_by_name_from_its_package(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from kubelite.runtime.images import store\nfrom kubelite.runtime.reference import quoted\n"
                      "from kubelite.runtime.images import garbage, ImageStore\n")
    assert imports_of(module) == {"kubelite.runtime.images.store", "kubelite.runtime.reference",
                                  "kubelite.runtime.images.garbage", "kubelite.runtime.images"}


def test_what_callers_use_is_importable_from_the_package():
    from kubelite.runtime import images

    for name in ("ImageStore", "Image", "ImageConfig", "ImageError", "PulledLayer", "UnpackLimits",
                 "DEFAULT_MAX_LAYER_BYTES", "format_size", "host_architecture", "normalize_reference"):
        assert hasattr(images, name), name
    assert images.normalize_reference("busybox") == "docker.io/library/busybox:latest"


# ------------------------------------------------------------------------------------- the GC's rules


def image(n: int) -> Image:
    return Image(id=f"sha256:{n:064x}", names=(), config=ImageConfig(), layers=(), size=0, created=None)


@pytest.mark.parametrize("used, total, high, runs", [
    (84, 100, 85, False),
    (85, 100, 85, True),    # at the threshold: the kubelet collects
    (99, 100, 85, True),
    (0, 0, 85, False),      # a filesystem that reports no size
])
def test_the_image_gc_runs_from_the_high_threshold_on(used, total, high, runs):
    assert garbage.over_threshold(used=used, total=total, high_percent=high) is runs


@pytest.mark.parametrize("used, total, low, to_free", [(90, 100, 80, 10), (85, 1000, 80, -715), (80, 100, 80, 0)])
def test_the_image_gc_frees_down_to_the_low_threshold(used, total, low, to_free):
    assert garbage.bytes_to_free(used=used, total=total, low_percent=low) == to_free


def test_the_image_gc_deletes_unused_images_least_recently_used_first_until_enough_is_freed():
    images_ = [image(1), image(2), image(3), image(4)]
    used_at = {images_[0].id: 30.0, images_[1].id: 10.0, images_[2].id: 20.0, images_[3].id: 5.0}
    removed: list[str] = []

    def remove(image_id: str) -> int | None:
        removed.append(image_id)
        return 6

    got = garbage.collect(images_, in_use={images_[3].id}, last_used=lambda i: used_at[i.id], to_free=10,
                          remove=remove)

    assert removed == [images_[1].id, images_[2].id]    # the one in use is never asked for, the newest not needed
    assert got == [images_[1], images_[2]]


def test_an_image_gone_or_in_use_by_the_time_it_is_deleted_frees_nothing_and_the_next_one_goes():
    images_ = [image(1), image(2)]
    got = garbage.collect(images_, in_use=set(), last_used=lambda i: int(i.id[-1]), to_free=5,
                          remove=lambda image_id: None if image_id == images_[0].id else 5)
    assert got == [images_[1]]


def test_nothing_to_free_deletes_nothing():
    asked: list[str] = []
    assert garbage.collect([image(1)], in_use=set(), last_used=lambda i: 0.0, to_free=0,
                           remove=lambda image_id: asked.append(image_id) or 1) == []
    assert asked == []
