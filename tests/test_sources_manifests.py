"""kubelite.sources.manifests: file rules, reading and locating problems, scanning, resolving."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubelite.sources.manifests import (
    MAX_MANIFEST_BYTES,
    FileResult,
    ManifestProblem,
    ManifestSnapshot,
    is_manifest_name,
    read_file,
    resolve,
    scan,
)

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "bad_manifests"
CANARY = "canary-7f3a9"  # in every corpus file, on or next to the offending line; never in a message


def pod_yaml(name: str, *, namespace: str | None = None, image: str = "busybox") -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}{ns}\n"
            f"spec:\n  containers:\n  - name: app\n    image: {image}\n")


def keys(result: FileResult) -> list[str]:
    return [pod.key for pod in result.pods]


# ------------------------------------------------------------------------------ name rules


@pytest.mark.parametrize(("name", "read"), [
    ("web.yaml", True),
    ("web.yml", True),
    ("web.json", True),
    ("kube-apiserver.v2.yaml", True),
    (".web.yaml", False),
    (".web.yaml.swp", False),
    (".#web.yaml", False),
    ("web.yaml~", False),
    ("web.yaml.bak", False),
    ("web.yaml.swp", False),
    ("web.yaml.tmp", False),
    ("web.yaml.orig", False),
    ("web.yaml.rej", False),
    ("#web.yaml#", False),
    ("notes.txt", False),
    ("web", False),
    ("web.YAML", False),  # suffixes are case-sensitive, as with kubectl
])
def test_manifest_name_rules(name: str, read: bool) -> None:
    assert is_manifest_name(name) is read


# ------------------------------------------------------------------------------ one file


def test_multi_document_file_gives_one_pod_per_document(tmp_path: Path) -> None:
    path = tmp_path / "pods.yaml"
    path.write_text(pod_yaml("web") + "---\n" + pod_yaml("api", namespace="prod"))
    result = read_file(path, root=tmp_path)
    assert result.ok
    assert keys(result) == ["default/web", "prod/api"]
    assert result.path == str(path)


def test_empty_documents_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "pods.yaml"
    path.write_text("---\n# nothing here\n---\n" + pod_yaml("web") + "---\n")
    result = read_file(path, root=tmp_path)
    assert result.ok and keys(result) == ["default/web"]


def test_empty_file_is_valid_and_defines_no_pods(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    result = read_file(tmp_path / "empty.yaml", root=tmp_path)
    assert result.ok and result.pods == [] and result.warnings == []


def test_json_manifest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "web.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                                "spec": {"containers": [{"name": "app", "image": "busybox"}]}}, indent="\t"))
    result = read_file(path, root=tmp_path)
    assert result.ok and keys(result) == ["default/web"]


def test_a_configmap_document_is_a_configuration_object_not_a_pod(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\n---\n" + pod_yaml("web"))
    result = read_file(path, root=tmp_path)
    assert result.ok and keys(result) == ["default/web"] and result.warnings == []
    assert [c.key for c in result.configs] == [("ConfigMap", "default", "conf")]


def test_digest_is_sha256_of_the_bytes_and_follows_edits(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(pod_yaml("web"))
    first = read_file(path, root=tmp_path).digest
    path.write_text(pod_yaml("web", image="nginx"))
    second = read_file(path, root=tmp_path).digest
    assert second == hashlib.sha256(path.read_bytes()).hexdigest()
    assert first != second


def test_problem_is_one_line_and_omits_unknown_parts() -> None:
    located = ManifestProblem("web.yaml", 2, 7, "spec.containers[0].name", "Required value")
    assert str(located) == "web.yaml: document 2, line 7: spec.containers[0].name: Required value"
    assert str(ManifestProblem("web.yaml", None, 3, None, "invalid YAML")) == "web.yaml: line 3: invalid YAML"
    assert str(ManifestProblem("web.yaml", 1, None, None, "refused")) == "web.yaml: document 1: refused"


# ------------------------------------------------------------------------------ the bad corpus


@dataclass(frozen=True)
class Expect:
    field: str | None
    line: int | None
    message: str  # the start of the message
    document: int | None = 1
    warning: bool = False  # the file is valid; the one finding is a warning


EXPECTED = {
    "invalid-yaml.yaml": Expect(None, 9, "invalid YAML: mapping values are not allowed", document=None),
    "invalid-json.json": Expect(None, 5, "invalid JSON: Expecting ',' delimiter (line 5, column 3)", document=None),
    "binary-junk.yaml": Expect(None, 1, "not UTF-8 text (byte 1)", document=None),
    "control-characters.yaml": Expect(None, 4, "invalid YAML: control characters are not allowed (line 4, column 12)",
                                      document=None),
    "unknown-tag.yaml": Expect(None, 8, "invalid YAML: could not determine a constructor for the tag (line 8",
                               document=None),
    "alias-bomb.yaml": Expect(None, None, "YAML aliases expand to more values than the file has characters"),
    "self-reference.yaml": Expect(None, None, "nested more than 100 levels deep"),
    "not-a-mapping.yaml": Expect(None, 1, "not a Kubernetes object"),
    "wrong-kind.yaml": Expect(None, None, "kind Deployment is not run by kubelite; ignored", warning=True),
    "missing-name.yaml": Expect("metadata.name", 3, "Required value"),  # the line of its parent
    "invalid-name.yaml": Expect("metadata.name", 4, "Invalid value"),
    "duplicate-containers.yaml": Expect("spec.containers[1].name", 10, "Duplicate value"),
    "negative-grace.yaml": Expect("spec.terminationGracePeriodSeconds", 6, "Invalid value"),
    "json-negative-grace.json": Expect("spec.terminationGracePeriodSeconds", 6, "Invalid value"),
    "unknown-restart-policy.yaml": Expect("spec.restartPolicy", 6, "Unsupported value"),
    "string-port.yaml": Expect("spec.containers[0].ports[0].containerPort", 10, "Invalid value: must be an integer"),
    "duplicate-pod.yaml": Expect("metadata.name", 12, "Duplicate value: pod default/web is already defined in "
                                                      "document 1 of this file", document=2),
    "third-document-invalid.yaml": Expect("spec.containers[0].imagePullPolicy", 12, "Unsupported value", document=3),
    "unknown-field-typo.yaml": Expect("spec.containers[0].imagePullPolicyy", 10, "unknown field", warning=True),
    "configmap-duplicate-key.yaml": Expect("binaryData[mode]", 8, "Invalid value: duplicate of key present in data"),
    "configmap-bad-key.yaml": Expect("data[app config]", 6, "Invalid value: a valid config key must consist"),
    "secret-not-base64.yaml": Expect("data[password]", 6, "Invalid value: must be base64 data"),
    "hostpath-unknown-type.yaml": Expect("spec.volumes[0].hostPath.type", 13, "Unsupported value"),
}


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_manifest_is_reported_at_its_field_and_line_without_its_content(name: str) -> None:
    expect = EXPECTED[name]
    result = read_file(CORPUS / name, root=CORPUS)
    findings = result.warnings if expect.warning else result.errors
    assert result.ok is expect.warning
    assert len(findings) == 1, [str(f) for f in findings]
    finding = findings[0]
    assert (finding.file, finding.document, finding.line, finding.field) == \
        (name, expect.document, expect.line, expect.field)
    assert finding.message.startswith(expect.message), finding.message
    for problem in result.errors + result.warnings:
        assert CANARY not in str(problem)
        assert "\n" not in str(problem)


def test_same_pod_twice_in_one_file_keeps_the_first_and_fails_the_file() -> None:
    result = read_file(CORPUS / "duplicate-pod.yaml", root=CORPUS)
    assert keys(result) == ["default/web"] and not result.ok


# ------------------------------------------------------------------------------ refusals


def rchar() -> int:
    """Bytes this process has read so far, per the kernel."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_file_over_10_mib_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.truncate(20 * 1024 * 1024)  # sparse
    before = rchar()
    result = read_file(path, root=tmp_path)
    assert rchar() - before < 1024 * 1024
    assert [str(e) for e in result.errors] == ["big.yaml: larger than 10 MiB; not read"]
    assert result.digest == ""


def test_file_larger_than_it_claimed_is_read_at_most_10_mib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "growing.yaml"
    with path.open("wb") as f:
        f.truncate(20 * 1024 * 1024)
    real_fstat = os.fstat

    def fstat_claiming_100_bytes(fd: int) -> os.stat_result:
        info = real_fstat(fd)
        fields = list(info)[:10]
        fields[6] = 100  # st_size
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", fstat_claiming_100_bytes)
    before = rchar()
    result = read_file(path, root=tmp_path)
    read = rchar() - before
    monkeypatch.undo()
    assert MAX_MANIFEST_BYTES < read <= MAX_MANIFEST_BYTES + 64 * 1024
    assert [e.message for e in result.errors] == ["larger than 10 MiB; not read"]


def test_symlink_to_a_file_outside_the_directory_is_refused(tmp_path: Path) -> None:
    manifests, elsewhere = tmp_path / "manifests", tmp_path / "elsewhere"
    manifests.mkdir()
    elsewhere.mkdir()
    (elsewhere / "web.yaml").write_text(pod_yaml("web"))
    (manifests / "web.yaml").symlink_to(elsewhere / "web.yaml")
    result = read_file(manifests / "web.yaml", root=manifests)
    assert result.pods == [] and result.digest == ""
    assert [str(e) for e in result.errors] == ["web.yaml: symlink to a file outside the manifest directory; not read"]


def test_symlink_to_a_file_inside_the_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "web-v2.yaml").write_text(pod_yaml("web"))
    (tmp_path / "web.yaml").symlink_to("versions/web-v2.yaml")
    snapshot = scan(tmp_path)
    assert list(snapshot.files) == [str(tmp_path / "web.yaml")]  # the link's path, not its target's
    assert keys(snapshot.files[str(tmp_path / "web.yaml")]) == ["default/web"]


def test_dangling_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").symlink_to(tmp_path / "gone.yaml")
    result = read_file(tmp_path / "web.yaml", root=tmp_path)
    assert [e.message for e in result.errors] == ["dangling symlink: its target does not exist"]


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "web.yaml")
    result = read_file(tmp_path / "web.yaml", root=tmp_path)
    assert [e.message for e in result.errors] == ["not a regular file"]


_READ_AS_NOBODY = """
import json, os, sys
from pathlib import Path
from kubelite.sources.manifests import read_file
os.setgroups([]); os.setgid(65534); os.setuid(65534)
print(json.dumps([str(p) for p in read_file(Path(sys.argv[1]), root=Path(sys.argv[2])).errors]))
"""


def test_unreadable_file_is_reported_with_the_system_error_only() -> None:
    # /tmp, not tmp_path: pytest's base directory is private to root, and nobody must reach the file.
    directory = Path(tempfile.mkdtemp(prefix="kubelite-unreadable-"))
    try:
        directory.chmod(0o755)
        path = directory / "web.yaml"
        path.write_text(pod_yaml("web", image=CANARY))
        path.chmod(0o000)
        if os.geteuid() == 0:  # root reads anything: read as nobody, dropping privileges after the imports
            child = subprocess.run([sys.executable, "-c", _READ_AS_NOBODY, str(path), str(directory)],
                                   cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
            errors = json.loads(child.stdout)
        else:
            errors = [str(p) for p in read_file(path, root=directory).errors]
        assert errors == ["web.yaml: Permission denied"]
    finally:
        (directory / "web.yaml").unlink(missing_ok=True)
        directory.rmdir()


# ------------------------------------------------------------------------------ scan


def test_scan_reads_manifest_names_only_in_sorted_order(tmp_path: Path) -> None:
    for name in ("b.yaml", "a.yml", "c.json", "web.yaml.bak", ".web.yaml.swp", "web.yaml~", "notes.txt"):
        (tmp_path / name).write_text(pod_yaml("x") if not name.endswith(".json") else "{}")
    snapshot = scan(tmp_path)
    assert [Path(p).name for p in snapshot.files] == ["a.yml", "b.yaml", "c.json"]
    assert snapshot.root == str(tmp_path) and snapshot.problems == []


def test_subdirectory_named_like_a_manifest_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").mkdir()
    (tmp_path / "x.yaml" / "inner.yaml").write_text(pod_yaml("inner"))
    (tmp_path / "web.yaml").write_text(pod_yaml("web"))
    snapshot = scan(tmp_path)
    assert list(snapshot.files) == [str(tmp_path / "web.yaml")] and snapshot.problems == []


def test_missing_directory_gives_an_empty_snapshot_and_one_problem(tmp_path: Path) -> None:
    snapshot = scan(tmp_path / "manifests")
    assert snapshot.files == {}
    assert [str(p) for p in snapshot.problems] == [f"{tmp_path / 'manifests'}: manifest directory does not exist"]


def test_single_file_path_reads_only_that_file(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(pod_yaml("web"))
    (tmp_path / "api.yaml").write_text(pod_yaml("api"))
    snapshot = scan(tmp_path / "web.yaml")
    assert list(snapshot.files) == [str(tmp_path / "web.yaml")]
    assert keys(snapshot.files[str(tmp_path / "web.yaml")]) == ["default/web"]


def test_symlinked_directory_is_followed_and_paths_stay_under_the_link(tmp_path: Path) -> None:
    (tmp_path / "rev1").mkdir()
    (tmp_path / "rev1" / "web.yaml").write_text(pod_yaml("web"))
    (tmp_path / "manifests").symlink_to("rev1")
    snapshot = scan(tmp_path / "manifests")
    assert list(snapshot.files) == [str(tmp_path / "manifests" / "web.yaml")]
    assert snapshot.files[str(tmp_path / "manifests" / "web.yaml")].ok


# ------------------------------------------------------------------------------ resolve


def write_and_scan(directory: Path, files: dict[str, str]) -> ManifestSnapshot:
    for name, text in files.items():
        (directory / name).write_text(text)
    return scan(directory)


def test_invalid_edit_keeps_the_last_valid_version_and_reports_the_error(tmp_path: Path) -> None:
    first = resolve(write_and_scan(tmp_path, {"web.yaml": pod_yaml("web")}), {})
    running = first.pods["default/web"]
    broken = write_and_scan(tmp_path, {"web.yaml": pod_yaml("web") + "  bad: [\n"})
    second = resolve(broken, first.accepted)
    assert second.pods == {"default/web": running}
    assert second.kept == {str(tmp_path / "web.yaml")}
    assert [p.file for p in second.problems] == ["web.yaml"]
    assert second.problems[0].message.startswith("invalid YAML")
    assert second.accepted == first.accepted  # still the last valid version, for the next round


def test_invalid_file_never_valid_runs_nothing(tmp_path: Path) -> None:
    resolution = resolve(write_and_scan(tmp_path, {"web.yaml": "kind: Pod\n"}), {})
    assert resolution.pods == {} and resolution.kept == set() and len(resolution.problems) == 1


def test_valid_edit_replaces_the_pods_of_the_file(tmp_path: Path) -> None:
    first = resolve(write_and_scan(tmp_path, {"web.yaml": pod_yaml("web")}), {})
    second = resolve(write_and_scan(tmp_path, {"web.yaml": pod_yaml("api")}), first.accepted)
    assert list(second.pods) == ["default/api"] and second.kept == set()


def test_deleted_file_drops_its_pods(tmp_path: Path) -> None:
    first = resolve(write_and_scan(tmp_path, {"web.yaml": pod_yaml("web"), "api.yaml": pod_yaml("api")}), {})
    (tmp_path / "web.yaml").unlink()
    second = resolve(scan(tmp_path), first.accepted)
    assert list(second.pods) == ["default/api"]
    assert list(second.accepted) == [str(tmp_path / "api.yaml")]


def test_missing_directory_resolves_to_no_pods_and_reports_it(tmp_path: Path) -> None:
    resolution = resolve(scan(tmp_path / "gone"), {str(tmp_path / "gone" / "web.yaml"): []})
    assert resolution.pods == {} and [p.message for p in resolution.problems] == ["manifest directory does not exist"]


def test_first_file_in_sorted_order_wins_a_duplicate_pod(tmp_path: Path) -> None:
    snapshot = write_and_scan(tmp_path, {"b.yaml": pod_yaml("web", image="nginx"), "a.yaml": pod_yaml("web")})
    resolution = resolve(snapshot, {})
    assert resolution.sources == {"default/web": str(tmp_path / "a.yaml")}
    assert resolution.pods["default/web"].pod.spec.containers[0].image == "busybox"
    assert [str(p) for p in resolution.problems] == \
        ["b.yaml: pod default/web is already defined in a.yaml; this definition is ignored"]


def test_same_name_in_two_namespaces_are_two_pods(tmp_path: Path) -> None:
    snapshot = write_and_scan(tmp_path, {"a.yaml": pod_yaml("web"), "b.yaml": pod_yaml("web", namespace="prod")})
    resolution = resolve(snapshot, {})
    assert list(resolution.pods) == ["default/web", "prod/web"] and resolution.problems == []


def test_kept_version_still_claims_its_pod_name_first(tmp_path: Path) -> None:
    first = resolve(write_and_scan(tmp_path, {"a.yaml": pod_yaml("web")}), {})
    snapshot = write_and_scan(tmp_path, {"a.yaml": "kind: [\n", "b.yaml": pod_yaml("web", image="nginx")})
    second = resolve(snapshot, first.accepted)
    assert second.pods["default/web"] is first.pods["default/web"]
    assert second.kept == {str(tmp_path / "a.yaml")}
    assert any("already defined in a.yaml" in p.message for p in second.problems)


def test_warnings_are_carried_into_the_resolution() -> None:
    snapshot = ManifestSnapshot(str(CORPUS), {str(CORPUS / "unknown-field-typo.yaml"):
                                              read_file(CORPUS / "unknown-field-typo.yaml", root=CORPUS)})
    resolution = resolve(snapshot, {})
    assert list(resolution.pods) == ["default/web"]
    assert [w.field for w in resolution.warnings] == ["spec.containers[0].imagePullPolicyy"]


def test_an_unchanged_file_is_not_parsed_again(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(pod_yaml("a"))
    (tmp_path / "b.yaml").write_text(pod_yaml("b"))
    first = scan(tmp_path)
    (tmp_path / "b.yaml").write_text(pod_yaml("b", image="busybox:1.37"))
    second = scan(tmp_path, previous=first)
    a, b = str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")
    assert second.files[a] is first.files[a]
    assert second.files[b] is not first.files[b]
    assert second.files[b].pods[0].pod.spec.containers[0].image == "busybox:1.37"


def _counting_reads(monkeypatch) -> list[str]:
    from kubelite.sources import manifests

    opened: list[str] = []
    original = manifests._read_bytes

    def counting(path, root):
        opened.append(os.path.basename(path))
        return original(path, root)
    monkeypatch.setattr(manifests, "_read_bytes", counting)
    return opened


def test_a_file_whose_status_is_unchanged_is_not_read_again_and_any_write_is_seen(tmp_path: Path, monkeypatch) -> None:
    from kubelite.sources import manifests

    monkeypatch.setattr(manifests, "RACY_S", 0.0)   # every status trusted at once (no write races here)
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.yaml").write_text(pod_yaml(name))
    opened = _counting_reads(monkeypatch)
    first = scan(tmp_path)
    assert sorted(opened) == ["a.yaml", "b.yaml", "c.yaml"]
    opened.clear()
    second = scan(tmp_path, previous=first)
    assert opened == [] and second.files == first.files
    b = tmp_path / "b.yaml"
    info = b.stat()
    b.write_text(pod_yaml("x"))   # as long as b's
    os.utime(b, ns=(info.st_atime_ns, info.st_mtime_ns))   # same size, same mtime: only the change time moved
    assert b.stat().st_size == info.st_size
    third = scan(tmp_path, previous=second)
    assert opened == ["b.yaml"]
    assert keys(third.files[str(b)]) == ["default/x"]
    opened.clear()
    os.chmod(tmp_path / "c.yaml", 0o666)   # a chmod is a change too: refused now
    fourth = scan(tmp_path, previous=third)
    assert opened == ["c.yaml"] and not fourth.files[str(tmp_path / "c.yaml")].ok


def test_a_file_changed_just_before_a_scan_and_a_symlink_are_read_at_every_scan(tmp_path: Path, monkeypatch) -> None:
    manifests_dir = tmp_path / "m"
    manifests_dir.mkdir()
    (manifests_dir / "a.yaml").write_text(pod_yaml("a"))          # written now: younger than RACY_S
    os.symlink("real.yaml", manifests_dir / "link.yaml")
    (manifests_dir / "real.yaml").write_text(pod_yaml("r"))
    opened = _counting_reads(monkeypatch)
    first = scan(manifests_dir)
    opened.clear()
    second = scan(manifests_dir, previous=first)
    # a second write within the file system's timestamp granularity could leave the status as it
    # was: a status younger than RACY_S is not trusted, and a symlink's target may change unseen
    assert sorted(opened) == ["a.yaml", "link.yaml", "real.yaml"]
    assert second.files[str(manifests_dir / "a.yaml")] is first.files[str(manifests_dir / "a.yaml")]


def test_resolve_finds_a_copied_uid_among_many_pods(tmp_path: Path) -> None:
    for i in range(300):
        (tmp_path / f"p{i:03d}.yaml").write_text(pod_yaml(f"p{i:03d}"))
    doc = pod_yaml("z-copy").replace("metadata:\n", "metadata:\n  uid: shared-uid\n")
    (tmp_path / "y.yaml").write_text(pod_yaml("y").replace("metadata:\n", "metadata:\n  uid: shared-uid\n"))
    (tmp_path / "z.yaml").write_text(doc)
    resolution = resolve(scan(tmp_path), {})
    assert len(resolution.pods) == 301 and "default/z-copy" not in resolution.pods
    assert any("pod default/y already has this uid; pod default/z-copy is ignored" in p.message
               for p in resolution.problems)


def test_a_file_deleted_between_listing_and_reading_is_gone_not_an_error(tmp_path: Path, monkeypatch) -> None:
    from kubelite.sources import manifests

    (tmp_path / "a.yaml").write_text(pod_yaml("a"))
    (tmp_path / "b.yaml").write_text(pod_yaml("b"))
    listed = manifests._manifest_names(str(tmp_path))
    (tmp_path / "b.yaml").unlink()
    monkeypatch.setattr(manifests, "_manifest_names", lambda directory: listed)
    snapshot = scan(tmp_path)
    assert list(snapshot.files) == [str(tmp_path / "a.yaml")]


def test_a_manifest_directory_writable_by_all_users_is_refused(tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "a.yaml").write_text(pod_yaml("a"))
    manifests.chmod(0o777)
    snapshot = scan(manifests)
    assert snapshot.files == {}
    assert "writable by all users (mode 0777): refused" in str(snapshot.problems[0])
    manifests.chmod(0o775)  # group-writable is an administrator's choice: allowed
    assert list(scan(manifests).files) == [str(manifests / "a.yaml")]


def test_a_manifest_file_writable_by_all_users_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(pod_yaml("a"))
    (tmp_path / "a.yaml").chmod(0o666)
    result = read_file(tmp_path / "a.yaml", root=tmp_path)
    assert not result.ok and "writable by all users (mode 0666)" in str(result.errors[0])
