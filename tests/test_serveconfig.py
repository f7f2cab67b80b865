"""`kubelite serve --config FILE`: the KubeliteConfiguration file — its model, strict reading with
lines in the errors, the precedence flag > environment > file > default, `--print-config`, and SIGHUP
(the settings that change live, the ones that need a restart, a bad file) in a real daemon.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kubelite.cli import serveconfig
from kubelite.cli.main import _parser, main
from kubelite.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
HEAD = "apiVersion: kubelite.io/v1alpha1\nkind: KubeliteConfiguration\n"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for setting in serveconfig.SETTINGS:
        if setting.env:
            monkeypatch.delenv(setting.env, raising=False)


def config_file(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def serve_args(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(["serve", *argv])


def settings(*argv: str) -> serveconfig.KubeliteConfiguration:
    args = serve_args(*argv)
    for name in ("root", "run_dir", "manifests"):   # as main() fills the global flags
        if not hasattr(args, name):
            setattr(args, name, None)
    if not hasattr(args, "debug"):
        args.debug = False
    return serveconfig.effective(serveconfig.sources_of(args))


def flat(*argv: str) -> dict:
    return serveconfig.flatten(settings(*argv))


# ------------------------------------------------------------------------------ the parser and the model


def _serve_parser() -> argparse.ArgumentParser:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["serve"]


def test_every_serve_flag_has_a_field_in_the_configuration_file():
    """Walks the parser: a serve flag added without its field (and its row in SETTINGS) fails here."""
    serve = _serve_parser()
    dests = {a.dest for a in serve._actions} - serveconfig.NOT_SETTINGS
    assert sorted(dests - set(serveconfig.BY_DEST)) == [], "serve flags without a field in the configuration file"
    assert sorted(set(serveconfig.BY_DEST) - dests) == [], "settings whose flag is gone"
    fields = set(serveconfig.flatten(settings("--runtime", "fake"))) - {"apiVersion", "kind"}
    assert fields == set(serveconfig.BY_PATH), "every field of the model has its row in SETTINGS, and back"


def test_a_flag_not_given_has_no_value_so_the_file_can_set_it():
    args = serve_args()
    given = serveconfig.given_flags(args)
    assert given == {}
    assert set(args.flag_defaults) >= set(serveconfig.BY_DEST) - {"root", "run_dir", "manifests", "debug"}


def test_the_parser_defaults_are_the_models_defaults():
    """One default per setting: what the parser would have given is what the model holds."""
    args = serve_args()
    model = serveconfig.flatten(serveconfig.KubeliteConfiguration.model_validate(
        {"apiVersion": serveconfig.API_VERSION, "kind": serveconfig.KIND}))
    found_elsewhere = {"pod_cidr": "10.217.0.0/24", "bridge": "kubelite0"}   # None in the parser: cni's defaults
    for dest, default in args.flag_defaults.items():
        setting = serveconfig.BY_DEST[dest]
        value, expected = serveconfig._to_flag(setting, model[setting.path]), found_elsewhere.get(dest, default)
        assert value == expected or (expected is None and value == []), dest   # None: an empty list


def test_every_field_is_live_or_needs_a_restart_and_the_table_says_which():
    live = sorted(s.path for s in serveconfig.SETTINGS if s.live)
    assert live == sorted(["debug", "resolvConf", "relistPeriod", "backoffInitial", "backoffMax",
                           "imageGCHighThresholdPercent", "imageGCLowThresholdPercent", "imageMaxLayerSize",
                           "sync.ref", "sync.path", "sync.interval", "sync.allowEmpty", "seccompDefault",
                           "registry.authFile", "registry.certsDir", "registry.insecureRegistries"])
    rows = re.findall(r"^\| `([^`]+)` \| `(--[a-z-]+)`[^|]*\| (live|restart)", (REPO / "docs" / "configuration.md")
                      .read_text(), re.MULTILINE)
    assert sorted(rows) == sorted((s.path, f"--{s.dest.replace('_', '-')}", "live" if s.live else "restart")
                                  for s in serveconfig.SETTINGS), "docs/configuration.md's table of settings"


def test_the_example_file_is_a_valid_configuration_with_the_defaults(tmp_path, capsys):
    example = REPO / "docs" / "examples" / "config.yaml"
    assert main(["serve", "--config", str(example), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert main(["serve", "--print-config"]) == 0
    assert printed == yaml.safe_load(capsys.readouterr().out)
    documented = yaml.safe_load(example.read_text())
    assert set(serveconfig.flatten(serveconfig.KubeliteConfiguration.model_validate(documented))) == \
        set(serveconfig.BY_PATH) | {"apiVersion", "kind"}
    assert {k for k, v in documented.items() if not isinstance(v, dict)} | \
        {f"{k}.{f}" for k, v in documented.items() if isinstance(v, dict) for f in v} == \
        set(serveconfig.BY_PATH) | {"apiVersion", "kind"}, "the example names every field"


@pytest.mark.parametrize("text,expected", [
    ("30s", 30.0), ("1m", 60.0), ("500ms", 0.5), ("2h", 7200.0), ("1.5s", 1.5)])
def test_durations_read(text, expected):
    assert serveconfig.parse_duration(text) == expected


@pytest.mark.parametrize("seconds,text", [(30.0, "30s"), (60.0, "1m"), (300.0, "5m"), (90.0, "90s"), (0.5, "500ms"),
                                          (7200.0, "2h"), (0.7, "700ms"), (1.25, "1250ms"), (0.0001, "0.0001s")])
def test_durations_written_read_back_the_same(seconds, text):
    assert serveconfig.format_duration(seconds) == text
    assert serveconfig.parse_duration(text) == pytest.approx(seconds)


# ------------------------------------------------------------------------------ strict reading, errors with lines


@pytest.mark.parametrize("body,message", [
    ("sync:\n  repo: /srv/repo\n  interval: x\n",
     'config.yaml:5: sync.interval: invalid duration "x": a positive number with a unit'),
    ("relistPeriod: 20\n", 'config.yaml:3: relistPeriod: invalid duration 20: give text with a unit'),
    ("relistPeriod: -5s\n", 'config.yaml:3: relistPeriod: invalid duration "-5s": must be positive'),
    ("runtime: fake\nrelistPeriods: 5s\n", "config.yaml:4: relistPeriods: unknown field"),
    ("sync:\n  interval: 1m\n  intervall: 2m\n", "config.yaml:5: sync.intervall: unknown field"),
    ("runtime: docker\n", "config.yaml:3: runtime: Input should be 'runc' or 'fake'"),
    ("imageGCHighThresholdPercent: 101\n", "config.yaml:3: imageGCHighThresholdPercent: give a percentage from 0 "
                                           "to 100"),
    ("podWorkers: 65\n", "config.yaml:3: podWorkers: must be between 0 and 64"),
    ("maxParallelImagePulls: 0\n", "config.yaml:3: maxParallelImagePulls: must be at least 1"),
    ("podWorkers: two\n", "config.yaml:3: podWorkers: Input should be a valid integer"),
    ("imageGCHighThresholdPercent: 70\n", "config.yaml:1: imageGCLowThresholdPercent: 80 is above "
                                          "imageGCHighThresholdPercent (70)"),
    ("nodeIP: 10.0.0.300\n", "config.yaml:3: nodeIP: '10.0.0.300' is not an IP address"),
    ("podCIDR: 10.1.2.3/24\n", "config.yaml:3: podCIDR: 10.1.2.3/24 has host bits set"),
    ("podCIDR: 10.217.0.0/33\n", "config.yaml:3: podCIDR: '10.217.0.0/33' does not appear to be an IPv4 or IPv6 "
                                 "network"),
    ("apiAddress: nowhere\n", "config.yaml:3: apiAddress: give an IP address and a port"),
    ("allowedUnsafeSysctls: [kernel.msgmax, vm.swappiness]\n",
     "config.yaml:3: allowedUnsafeSysctls: the sysctls vm.swappiness are not known to be namespaced"),
    ("imageMaxLayerSize: 1Ki\n", "config.yaml:3: imageMaxLayerSize: '1Ki': give a size of at least 1Mi"),
    ("warmSandboxes: -1\n", "config.yaml:3: warmSandboxes: must be 0 (no pool) or more"),
    ("registry:\n  insecureRegistries: registry.local\n", "config.yaml:4: registry.insecureRegistries: Input should "
                                                          "be a valid list"),
])
def test_a_bad_field_is_named_with_its_file_and_line(tmp_path, body, message):
    path = config_file(tmp_path, HEAD + body)
    with pytest.raises(UsageError) as raised:
        settings("--config", str(path))
    assert str(raised.value).startswith(f"{tmp_path}/{message}"), str(raised.value)


@pytest.mark.parametrize("text,message", [
    ("kind: KubeliteConfiguration\nruntime: fake\n", "config.yaml:1: apiVersion: required: kubelite.io/v1alpha1"),
    ("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeliteConfiguration\n",
     'config.yaml:1: apiVersion: "kubelet.config.k8s.io/v1beta1": must be kubelite.io/v1alpha1'),
    ("apiVersion: kubelite.io/v1alpha1\nkind: KubeletConfiguration\n",
     'config.yaml:2: kind: "KubeletConfiguration": must be KubeliteConfiguration'),
    ("- runtime: fake\n", "config.yaml:1: a configuration file is a mapping"),
    (HEAD + "runtime: [fake\n", "config.yaml:4: invalid YAML"),
    (HEAD + "---\n" + HEAD, "config.yaml: holds 2 documents; a configuration file holds one KubeliteConfiguration"),
])
def test_a_file_that_is_no_configuration_is_refused_with_the_line(tmp_path, text, message):
    path = config_file(tmp_path, text)
    with pytest.raises(UsageError) as raised:
        settings("--config", str(path))
    assert str(raised.value).startswith(f"{tmp_path}/{message}"), str(raised.value)


def test_every_problem_is_listed_in_the_order_of_the_lines(tmp_path):
    path = config_file(tmp_path, HEAD + "runtime: fake\nbogus: 1\nsync:\n  interval: x\nwarmSandboxes: -2\n")
    with pytest.raises(UsageError) as raised:
        settings("--config", str(path))
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in str(raised.value).splitlines()] == ["4", "6", "7"]


def test_a_flag_inside_a_group_the_file_spells_wrong_leaves_the_files_error(tmp_path):
    path = config_file(tmp_path, HEAD + "sync: every minute\n")
    with pytest.raises(UsageError, match=r"config.yaml:3: sync: Input should be a valid dictionary"):
        settings("--config", str(path), "--sync-ref", "main")


def test_a_missing_file_is_a_usage_error_with_exit_status_1(tmp_path, capsys):
    assert main(["serve", "--config", str(tmp_path / "nope.yaml"), "--print-config"]) == 1
    assert f"error: {tmp_path}/nope.yaml: cannot read the configuration file" in capsys.readouterr().err


def test_a_bad_flag_value_is_named_by_the_flag(tmp_path):
    path = config_file(tmp_path, HEAD + "imageGCLowThresholdPercent: 60\n")
    with pytest.raises(UsageError, match=r"^--relist-period -3.0: invalid duration \"-3.0s\": must be positive"):
        settings("--config", str(path), "--relist-period", "-3")
    with pytest.raises(UsageError, match=r"config.yaml:3: imageGCLowThresholdPercent: 60 is above "
                                         r"imageGCHighThresholdPercent \(50\)$"):   # the file's field, its line
        settings("--config", str(path), "--image-gc-high-threshold", "50")
    with pytest.raises(UsageError, match=r"^--api-address nowhere: give an IP address and a port"):
        settings("--api-address", "nowhere")
    with pytest.raises(UsageError, match=r"^--image-gc-high-threshold 101: give a percentage from 0 to 100$"):
        settings("--config", str(path), "--image-gc-high-threshold", "101")


# ------------------------------------------------------------------------------ precedence


@pytest.mark.parametrize("flag,env,file,expected", [
    # (flag given, environment set, file's value) → what serve runs with
    (None, None, None, "default"),
    (None, None, "file", "file"),
    (None, "env", "file", "env"),
    ("flag", "env", "file", "flag"),
    ("flag", None, "file", "flag"),
    (None, "env", None, "env"),
])
def test_flag_then_environment_then_file_then_default(tmp_path, monkeypatch, flag, env, file, expected):
    argv = ["--config", str(config_file(tmp_path, HEAD + (f"root: {tmp_path}/file\n" if file else "")))]
    if env:
        monkeypatch.setenv("KUBELITE_ROOT", str(tmp_path / "env"))
    if flag:
        argv += ["--root", str(tmp_path / "flag")]
    want = str(serveconfig.config.default_root()) if expected == "default" else str(tmp_path / expected)
    assert flat(*argv)["root"] == want


@pytest.mark.parametrize("argv,body,path,expected", [
    ((), "", "relistPeriod", "20s"),
    ((), "relistPeriod: 5s\n", "relistPeriod", "5s"),
    (("--relist-period", "2.5"), "relistPeriod: 5s\n", "relistPeriod", "2500ms"),
    ((), "sync:\n  interval: 1h\n", "sync.interval", "1h"),
    (("--sync-interval", "10s"), "sync:\n  interval: 1h\n", "sync.interval", "10s"),
    ((), "imageGCHighThresholdPercent: 90\n", "imageGCHighThresholdPercent", 90),
    (("--image-gc-high-threshold", "70"), "imageGCHighThresholdPercent: 90\nimageGCLowThresholdPercent: 60\n",
     "imageGCHighThresholdPercent", 70),
    ((), "enableAPI: false\n", "enableAPI", False),
    (("--no-api",), "enableAPI: true\n", "enableAPI", False),
    ((), "debug: true\n", "debug", True),
    ((), "seccompDefault: true\n", "seccompDefault", True),
    (("--allowed-unsafe-sysctls", "kernel.msgmax,net.core.somaxconn"), "allowedUnsafeSysctls: [kernel.shm*]\n",
     "allowedUnsafeSysctls", ["kernel.msgmax", "net.core.somaxconn"]),
    (("--insecure-registry", "a:5000", "--insecure-registry", "b"), "registry:\n  insecureRegistries: [c]\n",
     "registry.insecureRegistries", ["a:5000", "b"]),
    ((), "registry:\n  insecureRegistries: [c]\n", "registry.insecureRegistries", ["c"]),
    ((), "podWorkers: 0\n", "podWorkers", 0),
    (("--pod-workers", "4"), "podWorkers: 0\n", "podWorkers", 4),
    ((), "warmSandboxes: 0\n", "warmSandboxes", 0),
    (("--warm-sandboxes", "0"), "warmSandboxes: 5\n", "warmSandboxes", 0),
    ((), "nodeName: edge-7\n", "nodeName", "edge-7"),
])
def test_a_flag_given_overrides_the_file_and_the_file_overrides_the_default(tmp_path, argv, body, path, expected):
    assert flat("--config", str(config_file(tmp_path, HEAD + body)), *argv)[path] == expected


def test_the_environment_of_the_registry_settings_sits_between_flag_and_file(tmp_path, monkeypatch):
    path = config_file(tmp_path, HEAD + "registry:\n  insecureRegistries: [c]\n  certsDir: /etc/file-certs\n")
    monkeypatch.setenv("KUBELITE_INSECURE_REGISTRIES", "x:1, y")
    monkeypatch.setenv("KUBELITE_CERTS_DIR", "/etc/env-certs")
    assert flat("--config", str(path))["registry.insecureRegistries"] == ["x:1", "y"]
    assert flat("--config", str(path))["registry.certsDir"] == "/etc/env-certs"
    assert flat("--config", str(path), "--certs-dir", "/etc/flag-certs")["registry.certsDir"] == "/etc/flag-certs"


def test_serve_runs_with_the_settings_of_the_file(tmp_path):
    """What the daemon is handed: the file's values, where no flag is given."""
    from kubelite.cli import serve

    path = config_file(tmp_path, HEAD + f"root: {tmp_path}/state\nrunDir: {tmp_path}/run\nrelistPeriod: 7s\n"
                                        "imageGCHighThresholdPercent: 75\nimageGCLowThresholdPercent: 50\n"
                                        "backoffMax: 1m\nnodeName: edge-1\nnodeIP: 192.0.2.7\nenableAPI: false\n"
                                        "sync:\n  repo: /srv/fleet.git\n  ref: main\n  path: nodes/edge-1\n"
                                        "  interval: 2m\nregistry:\n  insecureRegistries: [reg.local:5000]\n")
    args = serve_args("--config", str(path), "--backoff-initial", "3")
    for name in ("manifests", "debug"):
        setattr(args, name, None if name != "debug" else False)
    options = serve.options(serveconfig.as_args(serveconfig.effective(serveconfig.sources_of(args)), args))
    assert (options.agent.root, options.run_dir) == (tmp_path / "state", tmp_path / "run")
    assert options.agent.relist_period_s == 7.0
    assert (options.agent.image_gc_high_percent, options.agent.image_gc_low_percent) == (75, 50)
    assert (options.agent.backoff.initial_s, options.agent.backoff.max_s) == (3.0, 60.0)
    assert (options.agent.node_name, options.agent.node_ip) == ("edge-1", "192.0.2.7")
    assert options.api is None
    assert options.sync is not None
    assert (options.sync.repo, options.sync.ref, options.sync.path, options.sync.interval_s) == \
        ("/srv/fleet.git", "main", "nodes/edge-1", 120.0)
    assert options.registry.insecure == frozenset({"reg.local:5000"})
    assert options.registry.gc_high_percent == 75


# ------------------------------------------------------------------------------ --print-config


def test_print_config_is_a_configuration_file_that_reads_back_the_same(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KUBELITE_ROOT", str(tmp_path / "state"))
    path = config_file(tmp_path, HEAD + "runtime: fake\nrelistPeriod: 90s\nsync:\n  repo: /srv/r.git\n"
                                        "  interval: 1h\nallowedUnsafeSysctls: [kernel.msgmax]\n")
    assert main(["serve", "--config", str(path), "--print-config", "--pod-cidr", "10.99.0.0/24",
                 "--backoff-initial", "0.5"]) == 0
    printed = capsys.readouterr().out
    doc = yaml.safe_load(printed)
    assert list(doc)[:2] == ["apiVersion", "kind"]
    assert (doc["runtime"], doc["relistPeriod"], doc["sync"]["interval"], doc["podCIDR"], doc["backoffInitial"],
            doc["root"]) == ("fake", "90s", "1h", "10.99.0.0/24", "500ms", str(tmp_path / "state"))
    again = config_file(tmp_path, printed, "printed.yaml")
    assert main(["serve", "--config", str(again), "--print-config"]) == 0
    assert capsys.readouterr().out == printed


def test_print_config_without_a_file_shows_the_defaults(capsys):
    assert main(["serve", "--print-config"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert (doc["relistPeriod"], doc["imageGCHighThresholdPercent"], doc["apiAddress"], doc["sync"]["ref"]) == \
        ("20s", 85, "127.0.0.1:10280", "HEAD")


# ------------------------------------------------------------------------------ reload


def test_a_reload_takes_live_changes_and_keeps_what_needs_a_restart(tmp_path, caplog):
    path = config_file(tmp_path, HEAD + "relistPeriod: 20s\npodCIDR: 10.217.0.0/24\n")
    args = serve_args("--config", str(path), "--backoff-max", "60")
    args.root = args.run_dir = args.manifests = None
    args.debug = False
    sources = serveconfig.sources_of(args)
    running = serveconfig.effective(sources)
    path.write_text(HEAD + "relistPeriod: 5s\npodCIDR: 10.99.0.0/24\nbackoffMax: 2m\nsync:\n  interval: 1m\n")
    with caplog.at_level(logging.INFO, logger="kubelite"):
        new = serveconfig.reload(running, sources)
    after = serveconfig.flatten(new)
    assert after["relistPeriod"] == "5s" and after["sync.interval"] == "1m"
    assert after["podCIDR"] == "10.217.0.0/24"   # a restart-only setting stays as it runs
    assert after["backoffMax"] == "1m"            # the flag still wins over the file
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{path}: podCIDR changed (10.217.0.0/24 → 10.99.0.0/24): it needs a restart; kubelite "
                        "goes on with 10.217.0.0/24"]
    assert f"configuration reloaded from {path}: relistPeriod 20s → 5s, sync.interval 30s → 1m" in caplog.text

    path.write_text(HEAD + "relistPeriod: soon\n")
    with pytest.raises(UsageError, match=r"config.yaml:3: relistPeriod: invalid duration \"soon\""):
        serveconfig.reload(new, sources)


def test_the_daemon_applies_live_changes_to_the_agent_the_registry_and_the_sync(tmp_path):
    from kubelite.agent.agent import Agent
    from kubelite.agent.config import AgentConfig
    from kubelite.core.types import BackoffPolicy
    from kubelite.daemon import LoopHealth, ServeOptions, SyncOptions, apply_live
    from kubelite.runtime.fake import FakeRuntime
    from kubelite.runtime.registry import RegistryConfig
    from kubelite.store.store import Store

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    config = AgentConfig(manifests=manifests, root=tmp_path / "state", relist_period_s=20.0, pod_workers=0,
                         image_pull_workers=0)
    store = Store(config.root)
    agent = Agent(store=store, runtime=FakeRuntime(), config=config)
    try:
        running = ServeOptions(agent=config, run_dir=tmp_path / "run", runtime="runc",
                               registry=RegistryConfig(gc_high_percent=85),
                               sync=SyncOptions(repo="/srv/r.git", interval_s=30.0))
        new = dataclasses.replace(running, agent=dataclasses.replace(
            config, relist_period_s=5.0, image_gc_high_percent=70, image_gc_low_percent=60, node_name="other",
            backoff=BackoffPolicy(1.0, 60.0), pod_workers=8), registry=RegistryConfig(gc_high_percent=70,
                                                                                     insecure=frozenset({"r:5000"})),
            sync=SyncOptions(repo="/srv/r.git", ref="v2", interval_s=1.0), debug=True)

        class Runtime:
            registry = running.registry

        class Sync:
            options = running.sync
            updates: list = []

            def update(self, options):
                self.updates.append(options)

        health, runtime, sync = LoopHealth(20.0), Runtime(), Sync()
        agent.manifests_dirty = False
        now = apply_live(running, new, agent=agent, runtime=runtime, sync=sync, health=health)  # type: ignore[arg-type]
        assert (agent.config.relist_period_s, agent.config.image_gc_high_percent, agent.config.image_gc_low_percent,
                agent.config.backoff.max_s) == (5.0, 70, 60, 60.0)
        assert agent.executor.config is agent.config and agent.state.config is agent.config
        assert (agent.config.node_name, agent.config.pod_workers) == ("localhost", 0)   # restart-only: unchanged
        assert runtime.registry == new.registry and health.limit_s == 25.0
        assert agent.manifests_dirty, "a new relist period: a scan at once, the next one a period after it"
        assert sync.updates == [new.sync] and now.sync == new.sync
        assert logging.getLogger("kubelite").level == logging.DEBUG
        apply_live(now, dataclasses.replace(now, debug=False), agent=agent, runtime=runtime, sync=sync,  # type: ignore[arg-type]
                   health=health)
        assert logging.getLogger("kubelite").level == logging.INFO
    finally:
        agent.close()
        store.close()


# ------------------------------------------------------------------------------ a daemon and SIGHUP


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main",
                           *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=30).stdout


def pod_yaml(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}})


def test_sighup_changes_the_sync_interval_live_and_keeps_the_rest(tmp_path):
    """`serve --config` with a git sync every hour: a commit waits; after a SIGHUP with `interval: 1s`
    it lands, and so does the next one; a restart-only change is a warning; a bad file keeps the
    running configuration; a new `sync.path` swaps the pods for that directory's."""
    bare, work = tmp_path / "fleet.git", tmp_path / "work"
    git("init", "--quiet", "--bare", str(bare), cwd=tmp_path)
    git("init", "--quiet", str(work), cwd=tmp_path)

    def commit(name: str, directory: str = "pods") -> None:
        (work / directory).mkdir(exist_ok=True)
        (work / directory / f"{name}.yaml").write_text(pod_yaml(name))
        git("add", "-A", cwd=work)
        git("commit", "--quiet", "-m", name, cwd=work)
        git("push", "--quiet", str(bare), "HEAD:refs/heads/main", cwd=work)

    commit("first")
    base = (HEAD + f"runtime: fake\nmanifests: {tmp_path}/manifests\nroot: {tmp_path}/state\n"
            f"runDir: {tmp_path}/run\nenableAPI: false\nsync:\n  repo: {bare}\n  ref: main\n  path: pods\n")
    path = config_file(tmp_path, base + "  interval: 1h\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBELITE_")}
    env.update(PYTHONPATH=str(REPO), KUBELITE_ROOT=str(tmp_path / "state"))
    log = open(tmp_path / "serve.log", "w+")
    daemon = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--config", str(path)], env=env,
                              stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def pods() -> set[str]:
        out = subprocess.run([sys.executable, "-m", "kubelite.cli.main", "get", "pods", "-o", "json"], env=env,
                             capture_output=True, text=True, timeout=20, cwd=REPO).stdout
        return {p["metadata"]["name"] for p in json.loads(out)["items"]} if out else set()

    def logged() -> str:
        log.seek(0)
        return log.read()

    def wait_for(check, what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{logged()}")

    try:
        wait_for(lambda: pods() == {"first"}, "the first commit's pod")
        commit("second")
        time.sleep(3)
        assert pods() == {"first"}, "an hourly sync has not fetched yet"

        path.write_text(base + "  interval: 1s\npodCIDR: 10.99.0.0/24\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: pods() == {"first", "second"}, "the second commit, after the reload")
        commit("third")
        wait_for(lambda: "third" in pods(), "the third commit, at the new interval", timeout=10)
        assert f"configuration reloaded from {path}: sync.interval 1h → 1s" in logged()
        assert "podCIDR changed (10.217.0.0/24 → 10.99.0.0/24): it needs a restart" in logged()

        bad = base + "  interval: 1s\n  bogus: true\n"
        path.write_text(bad)
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "the configuration was not reloaded" in logged(), "the bad file's error")
        line = bad.splitlines().index("  bogus: true") + 1
        assert f"the running one stays: {path}:{line}: sync.bogus: unknown field" in logged()
        commit("fourth")
        wait_for(lambda: "fourth" in pods(), "the fourth commit: the interval of 1s stays", timeout=10)

        commit("elsewhere", directory="other")
        path.write_text(base.replace("path: pods", "path: other") + "  interval: 1s\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: pods() == {"elsewhere"}, "the pods of the new sync.path only")
        assert "sync.path pods → other" in logged()
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
    assert daemon.returncode == 0
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_sighup_without_a_configuration_file_is_a_warning_not_an_exit(tmp_path):
    """Before, SIGHUP's default action ended the process; now it only says there is nothing to reload."""
    (tmp_path / "manifests").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBELITE_")}
    env.update(PYTHONPATH=str(REPO), KUBELITE_ROOT=str(tmp_path / "state"), KUBELITE_RUN_DIR=str(tmp_path / "run"),
               KUBELITE_MANIFESTS=str(tmp_path / "manifests"))
    log = open(tmp_path / "serve.log", "w+")
    daemon = subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "serve", "--runtime", "fake", "--no-api"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + 15
        while "serving" not in (tmp_path / "serve.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        daemon.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "no configuration file to reload" not in (tmp_path / "serve.log").read_text() \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert daemon.poll() is None, "SIGHUP must not end kubelite"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
        log.close()
    assert "received SIGHUP: no configuration file to reload (serve runs without --config)" in \
        (tmp_path / "serve.log").read_text()
    assert daemon.returncode == 0


@pytest.mark.parametrize("sync_yaml,field,message", [
    ("  path: ../elsewhere\n", "sync.path", "'../elsewhere' leads outside the repository"),
    ("  path: nodes/{nodename}\n", "sync.path", "the only placeholder is {node}"),
    ("  ref: 'main branch'\n", "sync.ref", "invalid ref 'main branch'"),
    ("  ref: -main\n", "sync.ref", "invalid ref '-main'"),
])
def test_a_reload_refuses_a_sync_path_or_ref_the_sync_would_refuse(tmp_path, caplog, sync_yaml, field, message):
    """The git sync's own rules (gitsync.setting_problems), checked before anything changes: a UsageError
    naming the field, and the running configuration stays."""
    path = config_file(tmp_path, HEAD + "nodeName: edge-1\nsync:\n  repo: /srv/fleet.git\n  path: nodes/{node}\n")
    args = serve_args("--config", str(path))
    args.root = args.run_dir = args.manifests = None
    args.debug = False
    sources = serveconfig.sources_of(args)
    running = serveconfig.effective(sources)
    assert running.sync.path == "nodes/{node}"
    path.write_text(HEAD + "nodeName: edge-1\nrelistPeriod: 5s\nsync:\n  repo: /srv/fleet.git\n" + sync_yaml)
    with caplog.at_level(logging.INFO, logger="kubelite"):
        with pytest.raises(UsageError) as refused:
            serveconfig.reload(running, sources)
    assert f": {field}: " in str(refused.value) and message in str(refused.value), str(refused.value)
    assert str(path) in str(refused.value)
    assert "configuration reloaded" not in caplog.text


def test_a_sync_path_that_cannot_name_this_node_is_refused_at_start(tmp_path):
    path = config_file(tmp_path, HEAD + "nodeName: a/b\nsync:\n  repo: /srv/fleet.git\n  path: nodes/{node}\n")
    with pytest.raises(UsageError, match=r"config.yaml:6: sync.path: 'nodes/\{node\}' names the node, but the "
                                         r"node name 'a/b' cannot be a directory name"):
        settings("--config", str(path))
    with pytest.raises(UsageError, match=r"--sync-path \.\./x: '\.\./x' leads outside the repository"):
        settings("--sync-repo", "/srv/fleet.git", "--sync-path", "../x")
    assert settings("--sync-path", "../x").sync.path == "../x", "without a repository the path is not used"


@pytest.mark.parametrize("flag,seconds,written", [("30", 30.0, "30s"), ("1.5", 1.5, "1500ms"), ("90", 90.0, "90s"),
                                                 ("1m30s", 90.0, "90s")])
def test_sync_interval_takes_plain_seconds_from_the_flag(tmp_path, flag, seconds, written):
    """`serve --sync-interval 30` is 30 s, as documented and as before the configuration file; the file
    itself wants a unit."""
    model = settings("--sync-interval", flag)
    assert model.sync.interval == seconds and serveconfig.flatten(model)["sync.interval"] == written
    path = config_file(tmp_path, HEAD + "sync:\n  interval: 30\n")
    with pytest.raises(UsageError, match=r'config.yaml:4: sync.interval: invalid duration 30: give text with a unit'):
        settings("--config", str(path))
    assert settings("--config", str(path), "--sync-interval", flag).sync.interval == seconds   # the flag wins
    with pytest.raises(UsageError, match=r"--sync-interval -3: invalid duration \"-3s\": must be positive"):
        settings("--sync-interval", "-3")
