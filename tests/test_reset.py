"""`kubelite reset` without real containers: the agent's drain, the daemon's `Drain`, the iptables rules the
sweep takes as a network's, `--purge` keeping what kubelite did not make, and the confirmation."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

from kubelite import daemon, layout
from kubelite.cli.main import main
from kubelite.runtime.fake import Behavior
from kubelite.runtime.oci.cleanup import kubelites_mounts, rules_of
from tests.helpers import pod_doc
from tests.simulated import simulated_node


def test_a_draining_agent_terminates_every_pod_with_its_grace_period_and_starts_none(tmp_path):
    with simulated_node(tmp_path) as env:
        env.runtime.script("slow", "app", Behavior(ignore_sigterm=True))
        env.write("slow.yaml", pod_doc("slow", terminationGracePeriodSeconds=5))
        env.write("web.yaml", pod_doc("web"))
        env.settle()
        assert sorted(p["metadata"]["name"] for p in env.pods()) == ["slow", "web"]
        env.agent.drain()
        env.settle()
        assert [p["metadata"]["name"] for p in env.pods()] == ["slow"]   # web stopped at SIGTERM
        assert env.row("slow").status == "Terminating"
        env.advance(4)
        assert env.pods(), "within its grace period"
        env.advance(1)
        assert env.pods() == [] and env.agent.pods == {}
        ops = [op for op, _ in env.runtime.calls]
        assert ops.count("signal_TERM") == 2 and ops.count("signal_KILL") == 1
        assert env.runtime.list_containers() == [] and env.runtime.list_sandboxes() == []
        creates = env.creates()
        env.write("new.yaml", pod_doc("new"))   # the manifests still there, and a new one: nothing starts
        env.advance(30)
        assert env.pods() == [] and env.creates() == creates


def test_a_forced_drain_kills_every_container_at_once(tmp_path):
    with simulated_node(tmp_path) as env:
        env.runtime.script("slow", "app", Behavior(ignore_sigterm=True))
        env.write("slow.yaml", pod_doc("slow", terminationGracePeriodSeconds=300))
        env.settle()
        drain = daemon.Drain()
        drain.step(env.agent, env.runtime)
        assert not drain.started   # nothing asked yet
        drain.request(force=False)
        drain.request(force=True)   # a forced request hurries a drain already asked for
        drain.step(env.agent, env.runtime)
        env.settle()
        assert ("signal_KILL" in [op for op, _ in env.runtime.calls])
        assert env.pods() == [] and drain.done(env.agent)


DUMP = """\
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-DN-aaaa - [0:0]
:CNI-DN-bbbb - [0:0]
:CNI-0123 - [0:0]
:CNI-fedc - [0:0]
-A POSTROUTING -s 10.217.0.5/32 -m comment --comment "name: \\"kubelite0\\" id: \\"s1\\"" -j CNI-0123
-A POSTROUTING -s 10.99.0.5/32 -m comment --comment "name: \\"kubelite01\\" id: \\"s2\\"" -j CNI-fedc
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"kubelite0\\" id: \\"s1\\"" -j CNI-DN-aaaa
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"podman\\" id: \\"x\\"" -j CNI-DN-bbbb
-A CNI-0123 -d 10.217.0.0/24 -m comment --comment "name: \\"kubelite0\\" id: \\"s1\\"" -j ACCEPT
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
COMMIT
*filter
:CNI-FORWARD - [0:0]
-A CNI-FORWARD -d 10.217.0.5/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A CNI-FORWARD -s 10.217.0.5/32 -j ACCEPT
-A CNI-FORWARD -s 10.2.0.7/32 -j ACCEPT
-A CNI-FORWARD -j CNI-ADMIN
COMMIT
"""


def test_the_sweep_takes_only_the_rules_and_chains_of_its_own_network():
    rules, chains = rules_of(DUMP, "kubelite0", ipaddress.ip_network("10.217.0.0/24"))
    assert [r[1] for r in rules] == ["POSTROUTING", "CNI-HOSTPORT-DNAT", "CNI-0123",
                                     "CNI-FORWARD", "CNI-FORWARD"]
    assert chains == ["CNI-0123", "CNI-DN-aaaa"]   # never a shared chain
    assert rules[0][-2:] == ["-j", "CNI-0123"]
    assert 'name: "kubelite0" id: "s1"' in rules[0]   # the comment, unquoted, as iptables -D takes it
    assert rules_of(DUMP, "kubelite", ipaddress.ip_network("10.5.0.0/24")) == ([], [])


def test_purge_removes_what_kubelite_made_and_keeps_the_rest(tmp_path):
    root, run_dir = tmp_path / "state", tmp_path / "run"
    for d in (layout.images_dir(root), layout.pods_dir(root), layout.netns_dir(run_dir)):
        d.mkdir(parents=True)
    layout.db_path(root).write_text("")
    (layout.images_dir(root) / "index.json").write_text("{}")
    removed = daemon._purge(root, layout.ROOT_NAMES) + daemon._purge(run_dir, layout.RUN_NAMES)
    assert removed == [str(root), str(run_dir)] and not root.exists() and not run_dir.exists()

    layout.images_dir(root).mkdir(parents=True)
    (root / "notes.txt").write_text("mine")   # not kubelite's: it and its directory stay
    removed = daemon._purge(root, layout.ROOT_NAMES) + daemon._purge(run_dir, layout.RUN_NAMES)
    assert removed == [str(layout.images_dir(root))]
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]


def test_reset_asks_on_a_terminal_and_stops_at_no(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    root = tmp_path / "state"
    assert main(["--root", str(root), "--run-dir", str(tmp_path / "run"), "reset", "--purge"]) == 1
    err = capsys.readouterr().err
    assert "aborted" in err and f"delete the state root {root} (images too)" in err and "The manifests stay" in err
    asked: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "y")
    assert main(["--root", str(root), "--run-dir", str(tmp_path / "run"), "reset"]) == 0
    assert asked == ["Are you sure you want to proceed? [y/N]: "]
    assert "kubelite reset: done" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--force", "--purge", "-y"])
def test_every_reset_flag_has_a_help_text(flag, capsys):
    with pytest.raises(SystemExit):
        main(["reset", "--help"])
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith(flag))
    assert len(line.split(None, 1 if flag != "-y" else 2)) > 1 and "Examples:" in out


def test_reset_without_a_daemon_empties_the_store_and_leaves_no_run_dir_it_made(tmp_path):
    with simulated_node(tmp_path) as env:
        env.write("web.yaml", pod_doc("web"), {"apiVersion": "v1", "kind": "ConfigMap",
                                                "metadata": {"name": "settings"}, "data": {"a": "1"}})
        env.settle()
        assert env.pods()
    root, run_dir = tmp_path / "state", tmp_path / "run"
    lines: list[str] = []
    removed = daemon.reset_node(daemon.ResetOptions(root=root, run_dir=run_dir), progress=lines.append)
    assert removed == [] and not run_dir.exists()
    from kubelite.store.reader import Reader

    reader = Reader(root)
    try:
        assert reader.pods(None) == []
    finally:
        reader.close()
    assert layout.db_path(root).exists() and layout.images_dir(root).parent == root   # without --purge: kept
    assert daemon.reset_node(daemon.ResetOptions(root=root, run_dir=run_dir, purge=True)) == [str(root)]
    assert not root.exists() and not run_dir.exists()


def test_reset_refuses_a_state_root_that_is_a_symlink(tmp_path, capsys):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert main(["--root", str(tmp_path / "link"), "--run-dir", str(tmp_path / "run"), "reset", "-y", "--purge"]) == 1
    assert "is a symlink: refused" in capsys.readouterr().err and (tmp_path / "real").is_dir()


def test_the_sweep_takes_only_the_mounts_kubelite_makes():
    root, run = Path("/srv/kl"), Path("/run/kl")
    ours = [root / "pods/u1/containers/c1/rootfs", root / "pods/u1/volumes/kubernetes.io~empty-dir/m",
            root / "pods/u1/volume-subpaths/v/app/0", run / "sandboxes/s1/shm", run / "netns/s1"]
    host = [Path("/"), Path("/run"), root, run, root / "volumes", root / "volumes/claim-a", root / "pods",
            root / "pods/u1", root / "images", run / "sandboxes", run / "sandboxes/s1", run / "netns",
            run / "sandboxes/s1/rootfs", Path("/srv/kl-other/pods/u1/containers/c/rootfs"), Path("/srv")]
    found = kubelites_mounts(host + ours, root, run)
    assert sorted(found) == sorted(ours)
    assert [len(p.parts) for p in found] == sorted((len(p.parts) for p in found), reverse=True)   # deepest first


# ------------------------------------------------------------------ a run directory tied to its state root


@pytest.mark.parametrize("shared", ["/run", "/tmp", "/", "/var/run", "/run/user/0"])
def test_serve_and_reset_refuse_a_run_directory_every_program_shares(tmp_path, capsys, shared):
    base = ["--root", str(tmp_path / "state"), "--run-dir", shared]
    assert main([*base, "reset", "-y", "--purge"]) == 1
    assert "is a directory other programs use too: refused" in capsys.readouterr().err
    assert main([*base, "serve", "--runtime", "fake", "--manifests", str(tmp_path / "m")]) == 1
    assert "is a directory other programs use too: refused" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_serve_marks_its_run_directory_and_another_state_root_is_refused_it(tmp_path, capsys):
    from kubelite.runtime.oci import ownership

    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    (tmp_path / "a").mkdir(mode=0o700)
    ownership.claim(tmp_path / "a", run_dir)   # what serve does, holding a's lock
    marker = layout.instance_marker_path(run_dir)
    assert str(tmp_path / "a") in marker.read_text()
    ownership.claim(tmp_path / "a", run_dir)   # its own: again fine
    argv = ["--root", str(tmp_path / "b"), "--run-dir", str(run_dir)]
    assert main([*argv, "serve", "--runtime", "fake", "--no-api", "--manifests", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert f"run directory {run_dir} belongs to the kubelite of state root {tmp_path / 'a'}: refused" in err
    (run_dir / "sandboxes" / "s1").mkdir(parents=True)   # what a reset of b must not touch
    assert main([*argv, "reset", "-y", "--purge"]) == 1
    assert "belongs to the kubelite of state root" in capsys.readouterr().err
    assert marker.exists() and (run_dir / "sandboxes" / "s1").is_dir()


def test_reset_of_a_missing_state_root_sweeps_nothing_of_an_unmarked_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    bundle = layout.sandbox_bundle(run_dir, "foreign")   # a bundle without a record: the runtime's start removes it
    bundle.mkdir(parents=True)
    (layout.runc_root(run_dir)).mkdir()
    lines: list[str] = []
    options = daemon.ResetOptions(root=tmp_path / "typo", run_dir=run_dir, purge=True)
    assert daemon.reset_node(options, progress=lines.append) == []
    assert bundle.is_dir() and layout.runc_root(run_dir).is_dir() and not (tmp_path / "typo").exists()
    assert "nothing to reset" in lines[0]


def test_reset_of_a_missing_state_root_whose_marker_names_it_goes_on(tmp_path):
    from kubelite.runtime.oci import ownership

    root, run_dir = tmp_path / "gone", tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    ownership.claim(root, run_dir)
    daemon.reset_node(daemon.ResetOptions(root=root, run_dir=run_dir, purge=True))
    assert not run_dir.exists()


def test_an_unmarked_run_directory_is_this_instance_s_only_when_its_records_say_so(tmp_path):
    import json

    from kubelite.runtime.oci import ownership
    from kubelite.runtime.view import instance_name

    root, run_dir = tmp_path / "state", tmp_path / "run"
    assert ownership.owner(root, run_dir) is None   # nothing there: nothing proven
    record = layout.record_path(layout.sandbox_bundle(run_dir, "s1"))
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"cgroup_parent": f"/{instance_name(root)}/podu1"}))
    found = ownership.owner(root, run_dir)
    assert found is not None and found.ours and not found.marked
    ownership.claim(root, run_dir)   # an older kubelite's run directory: marked now
    assert ownership.owner(root, run_dir).marked
    layout.instance_marker_path(run_dir).unlink()
    record.write_text(json.dumps({"cgroup_parent": f"/{instance_name(tmp_path / 'other')}/podu1"}))
    found = ownership.owner(root, run_dir)
    assert found is not None and not found.ours
    with pytest.raises(daemon.UsageError, match="belongs to kubelite instance kubelite-"):
        ownership.claim(root, run_dir)
    assert not layout.instance_marker_path(run_dir).exists()
