"""Docker's credential helpers: `credHelpers` (per registry) and `credsStore` (the others) name a
`docker-credential-<name>` program that kubelite runs with `get` and the registry on stdin, as
Docker does. The helpers here are small scripts on PATH that record what they were asked."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest

from kubelite.runtime import registry
from kubelite.runtime.registry import Credentials, PullError, RegistryConfig, load_credentials
from kubelite.runtime.registry import config as registry_config
from kubelite.runtime.images import ImageStore
from tests.registries import Registry
from tests.test_registry import busybox, work  # noqa: F401 (the fixtures: a registry's work dir, the image)


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch) -> Path:
    """A directory on PATH for fake helpers; each records its argv and stdin in <dir>/<name>.asked."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ.get('PATH', '')}")
    return directory


def helper(directory: Path, name: str, body: str) -> Path:
    path = directory / f"docker-credential-{name}"
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" > "{directory}/{name}.asked"\n'
                    f'cat >> "{directory}/{name}.asked"\n{body}\n')
    path.chmod(0o755)
    return path


def answering(directory: Path, name: str, username: str, secret: str) -> Path:
    answer = json.dumps({"ServerURL": "x", "Username": username, "Secret": secret})
    return helper(directory, name, f"echo '{answer}'")


def asked(directory: Path, name: str) -> list[str] | None:
    path = directory / f"{name}.asked"
    return path.read_text().splitlines() if path.exists() else None


def living_in_group(pgid: int) -> list[int]:
    """The processes of process group `pgid` that still run (zombies waiting for a reaper do not)."""
    living = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            living.append(int(entry.name))
    return living


def config_file(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    return path


def test_the_registrys_own_helper_is_asked_with_get_and_the_registry_on_stdin(tmp_path, helpers):
    answering(helpers, "ecr-login", "AWS", "ecr-token")
    answering(helpers, "desktop", "someone", "else")
    path = config_file(tmp_path, {"credHelpers": {"123.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"},
                                  "credsStore": "desktop"})
    creds = load_credentials(path, "123.dkr.ecr.eu-west-1.amazonaws.com")
    assert creds == Credentials("AWS", "ecr-token")
    assert creds.source == "the credential helper docker-credential-ecr-login"
    assert asked(helpers, "ecr-login") == ["get", "123.dkr.ecr.eu-west-1.amazonaws.com"]
    assert asked(helpers, "desktop") is None          # the registry's own helper answered


def test_the_store_answers_for_registries_without_a_helper_of_their_own_and_docker_hub_is_its_index(
        tmp_path, helpers):
    answering(helpers, "gcr", "oauth2accesstoken", "ya29")
    answering(helpers, "pass", "me", "hub-token")
    path = config_file(tmp_path, {"credHelpers": {"gcr.io": "gcr"}, "credsStore": "pass",
                                  "auths": {"https://index.docker.io/v1/": {}}})
    assert load_credentials(path, "docker.io") == Credentials("me", "hub-token")
    assert asked(helpers, "pass") == ["get", "https://index.docker.io/v1/"]
    assert asked(helpers, "gcr") is None
    assert load_credentials(path, "gcr.io") == Credentials("oauth2accesstoken", "ya29")


def test_a_helper_that_holds_nothing_passes_on_to_the_store_then_to_auths(tmp_path, helpers):
    not_found = 'echo "credentials not found in native keychain"; exit 1'
    helper(helpers, "empty", not_found)
    helper(helpers, "blank", "echo '{\"ServerURL\": \"\", \"Username\": \"\", \"Secret\": \"\"}'")
    auth = base64.b64encode(b"alice:wonderland").decode()
    path = config_file(tmp_path, {"credHelpers": {"r.example": "empty"}, "credsStore": "blank",
                                  "auths": {"r.example": {"auth": auth}}})
    creds = load_credentials(path, "r.example")
    assert creds == Credentials("alice", "wonderland") and creds.source == str(path)
    assert asked(helpers, "empty") and asked(helpers, "blank")
    assert load_credentials(path, "other.example") is None


@pytest.mark.parametrize("body, message", [
    ("echo 'error getting credentials - err: exit status 1, out: `GDBus.Error: not unlocked`'; exit 1",
     r"docker-credential-broken failed for r.example: error getting credentials - err: exit status 1, out: "
     r"`GDBus.Error: not unlocked`"),
    ('echo "no route to the token service" >&2; exit 3', "failed for r.example: no route to the token service"),
    ("exit 4", "failed for r.example: exit status 4"),
    ("echo 'not json'", r'with something other than \{"Username": …, "Secret": …\}'),
    ("echo '{\"Username\": \"<token>\", \"Secret\": \"refresh\"}'", "identity token for r.example"),
])
def test_a_failing_helper_is_an_error_that_shows_its_own_message(tmp_path, helpers, body, message):
    helper(helpers, "broken", body)
    path = config_file(tmp_path, {"credHelpers": {"r.example": "broken"}})
    with pytest.raises(PullError, match=message):
        load_credentials(path, "r.example")


def test_a_helper_that_is_not_installed_is_named(tmp_path, helpers, monkeypatch):
    monkeypatch.setenv("PATH", str(helpers))
    path = config_file(tmp_path, {"credsStore": "desktop"})
    with pytest.raises(PullError, match=f"docker-credential-desktop \\(named in {path}\\) is not installed"):
        load_credentials(path, "r.example")


@pytest.mark.parametrize("doc, message", [
    ({"credsStore": "../../bin/sh"}, "credsStore is not the name of a credential helper"),
    ({"credHelpers": {"r.example": 5}}, r"credHelpers\['r.example'\] is not the name"),
    ({"credHelpers": ["r.example"]}, "'credHelpers' is not an object"),
])
def test_a_helper_name_that_is_not_one_is_refused(tmp_path, helpers, doc, message):
    with pytest.raises(PullError, match=message):
        load_credentials(config_file(tmp_path, doc), "r.example")


def test_a_helper_is_bounded_in_time_and_output(tmp_path, helpers, monkeypatch):
    monkeypatch.setattr(registry_config, "HELPER_TIMEOUT_S", 1.0)
    helper(helpers, "slow", f"echo $$ > {helpers}/slow.pid; sleep 30 & sleep 30")   # a child of its own
    helper(helpers, "chatty", "exec yes credentials")
    path = config_file(tmp_path, {"credHelpers": {"slow.example": "slow", "chatty.example": "chatty"}})
    with pytest.raises(PullError, match="docker-credential-slow did not answer within 1s: stopped it"):
        load_credentials(path, "slow.example")
    group = int((helpers / "slow.pid").read_text())
    deadline = time.monotonic() + 10   # SIGKILL to the group is sent; dying takes the kernel a moment
    while living_in_group(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert living_in_group(group) == []   # its child was stopped with it
    with pytest.raises(PullError, match="docker-credential-chatty printed more than 64 KiB: stopped it"):
        load_credentials(path, "chatty.example")


@pytest.mark.real
def test_a_pull_from_a_registry_that_needs_credentials_uses_the_helpers(tmp_path, work, busybox, helpers):
    reg = Registry(work / "auth-helper", auth="htpasswd").start()
    try:
        reg.push(f"docker-archive:{busybox}", "private/busybox:1.36")
        ref = f"{reg.host}/private/busybox:1.36"
        store = ImageStore(tmp_path / "store")
        answering(helpers, "wrong", "alice", "not-her-password")
        with pytest.raises(PullError, match="refused the credentials from the credential helper "
                                            "docker-credential-wrong"):
            registry.pull(store, ref, config=RegistryConfig(auth_file=config_file(tmp_path, {
                "credHelpers": {reg.host: "wrong"}})))
        answering(helpers, "right", "alice", "wonderland")
        result = registry.pull(store, ref, config=RegistryConfig(auth_file=config_file(tmp_path, {
            "credsStore": "right"})))
        assert ref in result.image.names
        assert asked(helpers, "right") == ["get", reg.host]
    finally:
        reg.stop()
