"""kubectl's habits on kubelite's command line: JSONPath templates, custom columns, selectors,
TYPE/NAME arguments, every command's help, shell completion, and `get`, `describe`, `delete`,
`apply -f` and `logs` used the way kubectl users type them, against a state the simulated runtime made.
"""

from __future__ import annotations

import argparse
import datetime
import http.server
import io
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from kubelite.cli import filenames, resources
from kubelite.cli.main import _parser, main
from kubelite.errors import UsageError
from kubelite.kubectl import columns, jsonpath, selectors
from kubelite.runtime import crilog
from tests.helpers import pod_doc
from tests.test_cli import dirs, populate, write  # noqa: F401 — the fixture and the state-making helpers

REPO = Path(__file__).resolve().parent.parent

POD_LIST = {"apiVersion": "v1", "kind": "List", "items": [
    {"metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
     "spec": {"nodeName": "n1", "containers": [{"name": "app", "ports": [{"containerPort": 8080}]},
                                               {"name": "log"}]},
     "status": {"phase": "Running", "podIP": "10.0.0.2"}},
    {"metadata": {"name": "db", "labels": {"app": "db"}},
     "spec": {"nodeName": "n1", "containers": [{"name": "pg"}]},
     "status": {"phase": "Pending"}},
]}


# ------------------------------------------------------------------ JSONPath

@pytest.mark.parametrize("template, expected", [
    ("{.items[*].metadata.name}", "web db"),
    ("{.kind}", "List"),
    ("{$.kind}", "List"),
    ('{range .items[*]}{.metadata.name}{"\\t"}{.status.phase}{"\\n"}{end}', "web\tRunning\ndb\tPending\n"),
    ("{range .items[*]}[{.metadata.name}]{end}", "[web][db]"),
    ('{.items[?(@.status.phase=="Running")].metadata.name}', "web"),
    ("{.items[?(@.status.phase!='Running')].metadata.name}", "db"),
    ("{.items[?(@.status.podIP)].metadata.name}", "web"),
    ("{.items[*].spec.containers[?(@.ports[0].containerPort>=8000)].name}", "app"),
    ("{.items[0].metadata.labels}", '{"app":"web","tier":"front"}'),
    ("{.items[0].spec.containers[*].name}", "app log"),
    ("{.items[-1].metadata.name}", "db"),
    ("{.items[0:1].metadata.name}", "web"),
    ("{.items[0,1].status.phase}", "Running Pending"),
    ("{.items[0].metadata['name','labels']}", 'web {"app":"web","tier":"front"}'),
    ("{..containerPort}", "8080"),
    ("{.items[0].metadata.labels.*}", "web front"),
    ("{.items[*].status.missing}", ""),          # missing keys print nothing, as kubectl
    ("{.items[5].metadata.name}", ""),
    ("names: {.items[*].metadata.name}!", "names: web db!"),
    ("plain text", "plain text"),
])
def test_jsonpath_runs_kubectl_s_templates(template, expected):
    assert jsonpath.render(template, POD_LIST) == expected


def test_jsonpath_reads_dotted_label_keys_escaped_or_in_brackets():
    pod = {"metadata": {"labels": {"app.kubernetes.io/name": "web"}}}
    assert jsonpath.render("{.metadata.labels.app\\.kubernetes\\.io/name}", pod) == "web"
    assert jsonpath.render("{.metadata.labels['app.kubernetes.io/name']}", pod) == "web"


@pytest.mark.parametrize("template, message", [
    ("{.items[*]", "unclosed action"),
    ("{range .items[*]}{.x}", "{range} without {end}"),
    ("{end}", "{end} without {range}"),
    ("{.items[x]}", "invalid array index"),
    ("{.items[?@.x]}", "invalid filter"),
    ("{.items[::0]}", "step of a slice cannot be 0"),
])
def test_jsonpath_errors_say_what_is_wrong(template, message):
    with pytest.raises(jsonpath.JSONPathError, match=message.replace("[", r"\[").replace("{", r"\{")):
        jsonpath.parse(template)


# ------------------------------------------------------------------ custom columns

@pytest.mark.parametrize("spec, expected", [
    ("NAME:.metadata.name,PHASE:.status.phase", ["NAME   PHASE", "web    Running", "db     Pending"]),
    ("NAME:metadata.name,IP:{.status.podIP}", ["NAME   IP", "web    10.0.0.2", "db     <none>"]),
    ("C:.spec.containers[*].name", ["C", "app,log", "pg"]),
])
def test_custom_columns_print_kubectl_s_cells(spec, expected):
    out = columns.format_table(columns.parse_spec(spec), POD_LIST["items"])
    assert [line.rstrip() for line in out.splitlines()] == expected


@pytest.mark.parametrize("spec", ["NAME", "NAME:", ":.metadata.name", ""])
def test_custom_columns_refuse_a_spec_without_header_and_path(spec):
    with pytest.raises(jsonpath.JSONPathError):
        columns.parse_spec(spec)


# ------------------------------------------------------------------ selectors (shared with the API)

@pytest.mark.parametrize("label, field, names", [
    ("app=web", None, ["web"]),
    ("app!=web", None, ["db"]),
    ("app in (web,db)", None, ["web", "db"]),
    ("app notin (web)", None, ["db"]),
    ("tier", None, ["web"]),
    ("!tier", None, ["db"]),
    ("app=web,tier=back", None, []),
    (None, "status.phase=Running", ["web"]),
    (None, "status.phase!=Running", ["db"]),
    (None, "metadata.name==db,spec.nodeName=n1", ["db"]),
    ("app", "spec.restartPolicy=Never", []),
])
def test_selectors_keep_what_the_api_server_keeps(label, field, names):
    match = selectors.matcher(label, field, "pods")
    assert [p["metadata"]["name"] for p in POD_LIST["items"] if match(p)] == names


@pytest.mark.parametrize("label, field, message", [
    ("a b", None, "invalid label key"),
    (None, "spec.containers=x", "field label not supported: spec.containers"),
    (None, "status.phase", "invalid selector"),
])
def test_bad_selectors_are_refused(label, field, message):
    with pytest.raises(selectors.SelectorError, match=message):
        selectors.matcher(label, field, "pods")


# ------------------------------------------------------------------ TYPE/NAME

@pytest.mark.parametrize("argv, expected", [
    (["get", "pod/web"], ["get", "pods", "web"]),
    (["get", "pods/web", "po/db", "-o", "wide"], ["get", "pods", "web", "db", "-o", "wide"]),
    (["--root", "x", "get", "-n", "ns", "pod/web"], ["--root", "x", "get", "-n", "ns", "pods", "web"]),
    (["get", "-l", "pod/x", "pods"], ["get", "-l", "pod/x", "pods"]),        # an option's value stays
    (["get", "configmap/app"], ["get", "configmaps", "app"]),
    (["get", "storageclass.storage.k8s.io/local-path"], ["get", "storageclasses", "local-path"]),
    (["describe", "pod/web"], ["describe", "pods", "web"]),
    (["delete", "pod/web", "pod/db"], ["delete", "pods", "web", "db"]),
    (["top", "pod/web"], ["top", "pods", "web"]),
    (["get", "pods", "web"], ["get", "pods", "web"]),
    (["logs", "pod/web"], ["logs", "pod/web"]),                               # one pod: resources.pod_name
    (["exec", "web", "--", "ls", "pod/web"], ["exec", "web", "--", "ls", "pod/web"]),
    # an abbreviated option takes its value as the parser reads it (argparse understands abbreviations)
    (["get", "pod/web", "--select", "app=web"], ["get", "pods", "web", "--select", "app=web"]),
    (["get", "--names", "ns", "pod/web"], ["get", "--names", "ns", "pods", "web"]),
    (["get", "--select=app=web", "pod/web"], ["get", "--select=app=web", "pods", "web"]),
    (["get", "pod/web", "--show-labels"], ["get", "pods", "web", "--show-labels"]),
])
def test_type_name_becomes_type_and_names(argv, expected):
    assert resources.rewrite(argv) == expected


@pytest.mark.parametrize("argv, message", [
    (["get", "pod/web", "cm/app"], "one resource type at a time"),
    (["get", "pods", "pod/web"], "no need to specify a resource type as a separate argument"),
])
def test_type_name_mistakes_are_refused_as_kubectl_refuses_them(argv, message):
    with pytest.raises(UsageError, match=message):
        resources.rewrite(argv)


@pytest.mark.parametrize("text, name", [("web", "web"), ("pod/web", "web"), ("pods/web", "web"), ("po/web", "web")])
def test_a_pod_is_named_alone_or_as_type_name(text, name):
    assert resources.pod_name(text) == name


@pytest.mark.parametrize("argv, pod, container", [
    (["exec", "pod/web", "-c", "app", "--", "ls", "pod/x"], "web", "app"),
    (["logs", "po/web", "side"], "web", "side"),
    (["kill", "pods/web"], "web", None),
    (["attach", "web"], "web", None),
    (["port-forward", "po/web", "8080"], "web", None),
])
def test_pod_commands_take_type_name(argv, pod, container):
    from kubelite.cli.main import _parse

    args = _parse(argv)
    assert args.pod == pod and getattr(args, "container", None) == container
    if args.command == "exec":
        assert args.command_args == ["ls", "pod/x"]


def test_a_pod_command_refuses_another_type():
    with pytest.raises(UsageError, match="give a pod as NAME or pod/NAME"):
        resources.pod_name("configmap/web")


@pytest.mark.parametrize("value, ok", [("wide", True), ("json", True), ("name", True),
                                       ("jsonpath={.kind}", True), ("custom-columns=N:.metadata.name", True),
                                       ("jsonpath=", False), ("jsonpath", False), ("table", False)])
def test_output_formats_are_kubectl_s(value, ok):
    if ok:
        assert resources.output_format(value) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            resources.output_format(value)


# ------------------------------------------------------------------ help, completion, version

def _commands(parser: argparse.ArgumentParser, path: str = ""):
    """Every (command path, parser) of the tree; an alias's parser once, under its first name."""
    path = path or parser.prog
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in _primary(action).items():
                yield from _commands(child, f"{path} {name}")


def _primary(action: argparse._SubParsersAction) -> dict[str, argparse.ArgumentParser]:
    seen: dict[int, str] = {}
    return {seen.setdefault(id(child), name): child for name, child in action.choices.items()
            if id(child) not in seen}


def empty_helps(parser: argparse.ArgumentParser) -> list[str]:
    """Every command and argument whose help is empty (or suppressed)."""
    missing = []
    for path, command in _commands(parser):
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                missing += [f"{path} {name}" for name in _primary(action) if not (helps.get(name) or "").strip()]
            elif not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_command_and_flag_has_a_help_text():
    assert empty_helps(_parser()) == []


def test_the_help_walk_finds_an_empty_help():
    parser = argparse.ArgumentParser(prog="x")
    sub = parser.add_subparsers(dest="command")
    quiet = sub.add_parser("quiet")                 # a command without help
    quiet.add_argument("--flag")                    # a flag without help
    loud = sub.add_parser("loud", help="has help")
    loud.add_argument("thing", help="")             # an argument with an empty help
    assert empty_helps(parser) == ["x quiet", "x quiet --flag", "x loud thing"]


@pytest.mark.parametrize("command", ["serve", "get", "get pods", "describe", "apply", "delete", "logs", "exec",
                                     "cp", "kill", "attach", "port-forward", "kubeconfig", "version", "completion",
                                     "top", "image", "image pull"])
def test_commands_show_kubectl_style_examples(command, capsys):
    with pytest.raises(SystemExit):
        main([*command.split(), "--help"])
    out = capsys.readouterr().out
    assert "Examples:\n  # " in out and "  kubelite " in out.split("Examples:")[1]


def test_version_flag_and_python_dash_m(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    from kubelite import __version__

    assert capsys.readouterr().out == f"kubelite v{__version__}\n"
    done = subprocess.run([sys.executable, "-m", "kubelite", "version", "-o", "json"], capture_output=True,
                          text=True, timeout=30, cwd=REPO)
    assert done.returncode == 0, done.stderr
    client = json.loads(done.stdout)["clientVersion"]
    assert client["gitVersion"] == f"v{__version__}" and client["platform"].startswith("linux/")


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is part of every supported system")
def test_bash_completion_is_registered_and_completes_commands_and_flags(tmp_path):
    script = tmp_path / "kubelite.bash"
    done = subprocess.run([sys.executable, "-m", "kubelite", "completion", "bash"], capture_output=True, text=True,
                          timeout=30, cwd=REPO)
    assert done.returncode == 0, done.stderr
    script.write_text(done.stdout)
    probe = (f"source {script}\ncomplete -p kubelite\n"
             "COMP_WORDS=(kubelite ge); COMP_CWORD=1; _shtab_kubelite; echo \"words: ${COMPREPLY[*]}\"\n"
             "COMP_WORDS=(kubelite get pods --show); COMP_CWORD=3; _shtab_kubelite; echo \"flags: ${COMPREPLY[*]}\"\n")
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True, text=True,
                         timeout=30).stdout.splitlines()
    assert out[0].startswith("complete ") and out[0].endswith(" kubelite")
    assert "words: get" in out and "flags: --show-labels" in out


def test_zsh_completion_is_a_compdef(capsys):
    assert main(["completion", "zsh"]) == 0
    assert capsys.readouterr().out.startswith("#compdef kubelite")


def test_completion_is_not_loaded_by_other_commands():
    code = ("import sys; from kubelite.cli.main import main; main(['version']); "
            "print('shtab' in sys.modules, 'httpx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert out.stdout.splitlines()[-1] == "False False"


# ------------------------------------------------------------------ get, describe, delete on a real state

@pytest.fixture
def state(dirs):  # noqa: F811 — the fixture of test_cli
    manifests, root = dirs
    web = pod_doc("web", containers=["app", "log"])
    web["metadata"]["labels"] = {"app": "web", "tier": "front"}
    db = pod_doc("db")
    db["metadata"]["labels"] = {"app": "db"}
    job = pod_doc("job")
    job["spec"]["restartPolicy"] = "Never"
    populate(manifests, root, web, db, job)
    return manifests, root


def out_of(capsys, *argv: str, code: int = 0) -> str:
    assert main(list(argv)) == code
    return capsys.readouterr().out


def test_get_pods_by_label_and_field_selector(state, capsys):
    assert out_of(capsys, "get", "pods", "-l", "app", "-o", "name") == "pod/db\npod/web\n"
    assert out_of(capsys, "get", "pods", "-l", "app in (web),tier=front", "-o", "name") == "pod/web\n"
    assert out_of(capsys, "get", "pods", "--selector", "!app", "-o", "name") == "pod/job\n"
    assert out_of(capsys, "get", "pods", "--field-selector", "spec.restartPolicy=Never", "-o", "name") == "pod/job\n"
    assert out_of(capsys, "get", "pods", "--field-selector", "metadata.name!=web,status.phase=Running",
                  "-o", "name") == "pod/db\npod/job\n"
    assert main(["get", "pods", "-l", "app=nothing"]) == 0
    assert capsys.readouterr() == ("", "No resources found in default namespace.\n")
    assert main(["get", "pods", "--field-selector", "spec.containers=x"]) == 1
    assert "field label not supported: spec.containers" in capsys.readouterr().err
    assert main(["get", "pods", "web", "-l", "app"]) == 1
    assert capsys.readouterr().err == "error: name cannot be provided when a selector is specified\n"


def test_get_pods_show_labels(state, capsys):
    lines = out_of(capsys, "get", "pods", "--show-labels").splitlines()
    assert lines[0].split()[-1] == "LABELS"
    assert lines[3].split()[0] == "web" and lines[3].split()[-1] == "app=web,tier=front"
    assert lines[2].split()[0] == "job" and lines[2].split()[-1] == "<none>"


def test_get_pods_jsonpath_custom_columns_and_name(state, capsys):
    assert out_of(capsys, "get", "pods", "-o", "jsonpath={.items[*].metadata.name}") == "db job web"
    assert out_of(capsys, "get", "pods", "-o", 'jsonpath={range .items[*]}{.metadata.name}:{.status.phase}{"\\n"}'
                                                 '{end}') == "db:Running\njob:Running\nweb:Running\n"
    assert out_of(capsys, "get", "pod", "web", "-o", "jsonpath={.metadata.name}") == "web"
    lines = out_of(capsys, "get", "pods", "-o", "custom-columns=NAME:.metadata.name,C:.spec.containers[*].name",
                   "-l", "app").splitlines()
    assert [line.split() for line in lines] == [["NAME", "C"], ["db", "app"], ["web", "app,log"]]
    assert main(["get", "pods", "-o", "jsonpath={.items[*]"]) == 1
    assert "unclosed action" in capsys.readouterr().err


def test_get_type_name_and_several_names(state, capsys):
    assert out_of(capsys, "get", "pod/web", "po/db", "-o", "name") == "pod/web\npod/db\n"
    assert out_of(capsys, "get", "pods", "web", "db", "-o", "name") == "pod/web\npod/db\n"
    listed = json.loads(out_of(capsys, "get", "pods/web", "pods/db", "-o", "json"))
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["web", "db"]
    assert json.loads(out_of(capsys, "get", "pod/web", "-o", "json"))["kind"] == "Pod"
    assert main(["get", "pods", "web", "nope"]) == 1
    printed = capsys.readouterr()
    assert printed.out.splitlines()[1].split()[0] == "web"
    assert printed.err.startswith('Error from server (NotFound): pods "nope" not found\n')
    with pytest.raises(SystemExit):
        main(["get", "pod/web", "configmap/x"])
    assert "one resource type at a time" in capsys.readouterr().err


def test_describe_several_pods_and_by_label(state, capsys):
    out = out_of(capsys, "describe", "pod/web", "pod/db")
    assert out.count("Name:         ") == 2 and out.index("Name:         web") < out.index("Name:         db")
    out = out_of(capsys, "describe", "pods", "-l", "app=db")
    assert out.count("Name:         ") == 1 and "Name:         db" in out


def test_delete_several_pods_as_type_name(state, capsys):
    manifests, _ = state
    assert out_of(capsys, "delete", "pod/web", "pod/db") == 'pod "web" deleted\npod "db" deleted\n'
    assert sorted(p.name for p in manifests.iterdir()) == ["job.yaml"]


def test_get_configmaps_with_labels_and_jsonpath(dirs, capsys):  # noqa: F811
    manifests, root = dirs
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app", "labels": {"team": "a"}},
          "data": {"k": "v"}}
    write(manifests / "cm.yaml", cm)
    populate(manifests, root)
    lines = out_of(capsys, "get", "configmap/app", "--show-labels").splitlines()
    assert lines[0].split()[-1] == "LABELS" and lines[1].split()[-1] == "team=a"
    assert out_of(capsys, "get", "cm", "-l", "team=a", "-o", "jsonpath={.items[0].data.k}") == "v"
    assert out_of(capsys, "get", "cm", "-l", "team=b", "-o", "name") == ""


# ------------------------------------------------------------------ apply -f DIR|-|URL

def test_apply_a_directory_and_recursively(dirs, tmp_path, capsys):  # noqa: F811
    manifests, _ = dirs
    source = tmp_path / "src"
    (source / "more").mkdir(parents=True)
    write(source / "web.yaml", pod_doc("web"))
    write(source / "db.yml", pod_doc("db"))
    (source / "notes.txt").write_text("not a manifest")
    (source / "more" / "job.json").write_text(json.dumps(pod_doc("job")))
    assert out_of(capsys, "apply", "-f", str(source)) == "pod/db created\npod/web created\n"
    assert sorted(p.name for p in manifests.iterdir()) == ["db.yml", "web.yaml"]
    assert out_of(capsys, "apply", "-R", "-f", str(source)) == \
        "pod/db unchanged\npod/web unchanged\npod/job created\n"
    assert sorted(p.name for p in manifests.iterdir()) == ["db.yml", "job.json", "web.yaml"]


def test_apply_and_diff_read_a_directory_by_the_same_rules(dirs, tmp_path, capsys):  # noqa: F811
    """`apply -f DIR` and `diff -f DIR` read the same files, by the daemon's rules for a manifests
    directory: a symlink leading out of DIR is not read, and a DIR anyone may write is refused."""
    manifests, root = dirs
    populate(manifests, root)
    source, outside = tmp_path / "src", tmp_path / "outside"
    source.mkdir()
    outside.mkdir()
    write(source / "web.yaml", pod_doc("web"))
    (source / "leak.yaml").symlink_to(write(outside / "secret.yaml", pod_doc("secret")))
    assert main(["diff", "-f", str(source)]) == 2
    captured = capsys.readouterr()
    assert "leak.yaml: symlink to a file outside the manifest directory; not read" in captured.err
    assert "pod/web: create" in captured.out and "pod/secret" not in captured.out
    assert main(["apply", "-f", str(source)]) == 1
    captured = capsys.readouterr()
    assert "leak.yaml: symlink to a file outside the manifest directory; not read" in captured.err
    assert captured.out == "pod/web created\n" and sorted(p.name for p in manifests.iterdir()) == ["web.yaml"]
    source.chmod(0o777)
    try:
        for command, status in (("diff", 2), ("apply", 1)):
            assert main([command, "-f", str(source)]) == status
            assert "directory is writable by all users (mode 0777): refused" in capsys.readouterr().err, command
        assert main(["apply", "-R", "-f", str(tmp_path / "outside"), "-f", str(source)]) == 1
        assert "writable by all users" in capsys.readouterr().err
    finally:
        source.chmod(0o755)


def test_apply_from_standard_input_and_several_f(dirs, tmp_path, capsys, monkeypatch):  # noqa: F811
    manifests, _ = dirs
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(yaml.safe_dump(pod_doc("piped")).encode())))
    other = write(tmp_path / "web.yaml", pod_doc("web"))
    assert out_of(capsys, "apply", "-f", "-", "-f", str(other)) == "pod/piped created\npod/web created\n"
    assert yaml.safe_load((manifests / "piped.yaml").read_text())["metadata"]["name"] == "piped"


class _Manifests(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    delays: dict[str, float] = {}   # path → seconds before the answer

    def do_GET(self):  # noqa: N802 — http.server's name
        time.sleep(self.delays.get(self.path, 0.0))
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Manifests)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Manifests.routes
    server.shutdown()
    server.server_close()
    thread.join(5)
    _Manifests.routes.clear()


def test_apply_from_a_url(dirs, loopback_server, capsys, monkeypatch):  # noqa: F811
    manifests, _ = dirs
    base, routes = loopback_server
    routes["/web.yaml"] = (200, {}, yaml.safe_dump(pod_doc("web")).encode())
    routes["/manifest"] = (200, {}, yaml.safe_dump(pod_doc("db")).encode())
    routes["/moved"] = (302, {"Location": "/web.yaml"}, b"")
    routes["/away"] = (302, {"Location": "http://example.com/web.yaml"}, b"")
    routes["/big.yaml"] = (200, {}, b"#" * (filenames.sources.MAX_MANIFEST_BYTES + 1))
    assert out_of(capsys, "apply", "-f", f"{base}/web.yaml", "-f", f"{base}/manifest") == \
        "pod/web created\npod/db created\n"
    assert sorted(p.name for p in manifests.iterdir()) == ["db.yaml", "web.yaml"]
    for path, message in (("/away", "a redirect to plain http is refused"),
                          ("/moved", "a redirect to plain http is refused"),   # even on the loopback
                          ("/big.yaml", "larger than 10 MiB"), ("/gone.yaml", "the server answered 404")):
        assert main(["apply", "-f", base + path]) == 1
        assert message in capsys.readouterr().err
    assert main(["apply", "-f", "http://example.com/web.yaml"]) == 1
    assert "plain http is refused" in capsys.readouterr().err


def test_apply_from_https_checks_the_certificate(dirs, tmp_path, capsys, monkeypatch):  # noqa: F811
    """An https server whose certificate the system does not trust is refused; trusted, it is read."""
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubelite test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address(
                "127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    _Manifests.routes["/web.yaml"] = (200, {}, yaml.safe_dump(pod_doc("web")).encode())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Manifests)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"https://127.0.0.1:{server.server_address[1]}"
    url = f"{base}/web.yaml"
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Manifests)
    plain_thread = threading.Thread(target=plain.serve_forever, daemon=True)
    plain_thread.start()
    _Manifests.routes["/moved"] = (302, {"Location": "/web.yaml"}, b"")
    _Manifests.routes["/to-plain"] = (302, {"Location": f"http://127.0.0.1:{plain.server_address[1]}/web.yaml"},
                                      b"")
    for hop in range(3):   # three redirects, each answered after 0.4 s: 1.2 s in all
        _Manifests.routes[f"/slow{hop}"] = (302, {"Location": f"/slow{hop + 1}"}, b"")
        _Manifests.delays[f"/slow{hop}"] = 0.4
    _Manifests.routes["/slow3"] = (200, {}, yaml.safe_dump(pod_doc("web")).encode())
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "nothing.pem"))
        assert main(["apply", "-f", url]) == 1
        assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
        assert out_of(capsys, "apply", "-f", url) == "pod/web created\n"
        assert out_of(capsys, "apply", "-f", f"{base}/moved") == "pod/web unchanged\n"   # https to https
        assert main(["apply", "-f", f"{base}/to-plain"]) == 1   # to plain http, even on the loopback
        assert "a redirect to plain http is refused" in capsys.readouterr().err
        monkeypatch.setattr(filenames, "FETCH_TIMEOUT_S", 1.0)   # one deadline for the whole fetch
        started = time.monotonic()
        assert main(["apply", "-f", f"{base}/slow0"]) == 1
        assert "not read within 1s" in capsys.readouterr().err and time.monotonic() - started < 1.5
    finally:
        for running, runner in ((server, thread), (plain, plain_thread)):
            running.shutdown()
            running.server_close()
            runner.join(5)
        _Manifests.routes.clear()
        _Manifests.delays.clear()


# ------------------------------------------------------------------ logs

def _write_logs(root: Path, pod: dict, lines: dict[str, list[tuple[datetime.datetime, str]]]) -> None:
    from kubelite import layout

    meta = pod["metadata"]
    for container, entries in lines.items():
        status = next(s for s in pod["status"]["containerStatuses"] if s["name"] == container)
        path = layout.container_log_path(root, meta["namespace"], meta["name"], meta["uid"], container,
                                         status["restartCount"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(crilog.format_line(when, "stdout", text) for when, text in entries))


def test_logs_all_containers_prefix_and_since(state, capsys):
    _, root = state
    from kubelite.store.reader import Reader

    reader = Reader(root)
    [pod] = reader.pods("default", "web")
    reader.close()
    now = datetime.datetime.now(datetime.timezone.utc)
    _write_logs(root, pod, {"app": [(now - datetime.timedelta(hours=2), "app old"), (now, "app new")],
                            "log": [(now - datetime.timedelta(minutes=3), "log recent")]})
    assert out_of(capsys, "logs", "pod/web", "--all-containers") == "app old\napp new\nlog recent\n"
    assert out_of(capsys, "logs", "web", "--all-containers", "--prefix", "--since", "1h") == \
        "[pod/web/app] app new\n[pod/web/log] log recent\n"
    assert out_of(capsys, "logs", "web", "--all-containers", "--since", "1m30s") == "app new\n"
    stamp = (now - datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert out_of(capsys, "logs", "web", "log", "--since-time", stamp) == "log recent\n"
    assert out_of(capsys, "logs", "po/web", "-c", "app", "--tail", "1", "--prefix") == "[pod/web/app] app new\n"
    for argv, message in ((["--since", "5 minutes"], "a duration such as"),
                          (["--since-time", "yesterday"], "not an RFC 3339 time"),
                          (["--since", "1h", "--since-time", stamp], "at most one of"),
                          (["--all-containers", "-c", "app"], "cannot be given with --all-containers")):
        assert main(["logs", "web", *argv]) == 1
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400),
                                           ("1m30s", 90), ("1.5h", 5400), ("500ms", 0.5)])
def test_since_takes_go_durations(text, seconds):
    from kubelite.cli.containers import parse_since

    assert parse_since(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "m", "5x", "-5m", "0s", "5m "])
def test_since_refuses_what_is_not_a_duration(text):
    from kubelite.cli.containers import parse_since

    with pytest.raises(UsageError):
        parse_since(text)


def test_logs_follow_every_container_together_until_each_attempt_ends(state, capsys, monkeypatch):
    """`-f --all-containers --prefix`: lines written to either log while they run are printed, each
    after its source, and the command ends when neither container runs any more."""
    from kubelite.cli import containers
    from kubelite.store.reader import Reader

    _, root = state
    reader = Reader(root)
    [pod] = reader.pods("default", "web")
    reader.close()
    now = datetime.datetime.now(datetime.timezone.utc)
    _write_logs(root, pod, {"app": [(now, "app 1")], "log": [(now, "log 1")]})
    from kubelite import layout

    def path(container: str) -> Path:
        return layout.container_log_path(root, "default", "web", pod["metadata"]["uid"], container, 0)

    asked: dict[str, int] = {}

    def still_running(args, pod_, status):
        asked[status["name"]] = asked.get(status["name"], 0) + 1
        if asked[status["name"]] == 1:   # the container writes once more, then its attempt ends
            with open(path(status["name"]), "a") as log:
                log.write(crilog.format_line(now, "stdout", f"{status['name']} 2"))
            return True
        return False

    monkeypatch.setattr(containers, "_still_running", still_running)
    monkeypatch.setattr(containers, "FOLLOW_POLL_S", 0.01)
    assert main(["logs", "web", "-f", "--all-containers", "--prefix"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["[pod/web/app] app 1", "[pod/web/log] log 1"]
    assert sorted(lines[2:]) == ["[pod/web/app] app 2", "[pod/web/log] log 2"]
    assert asked == {"app": 2, "log": 2}


@pytest.mark.parametrize("argv", [["get", "pods", "-l", "app", "--field-selector", "status.phase=Running",
                                   "--show-labels"],
                                  ["get", "pod/web", "pod/db", "-o", "jsonpath={.items[*].metadata.name}"],
                                  ["get", "pods", "-o", "custom-columns=NAME:.metadata.name"],
                                  ["describe", "pods", "-l", "app=web"]])
def test_the_new_read_paths_load_neither_pydantic_nor_sqlalchemy(state, argv):
    _, root = state
    code = ("import sys; from kubelite.cli.main import main; code = main(sys.argv[1:]); "
            "print(code, sorted(m for m in ('pydantic', 'sqlalchemy', 'yaml', 'httpx', 'shtab') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, "--root", str(root), *argv], capture_output=True, text=True,
                          timeout=30, cwd=REPO)
    assert done.stdout.splitlines()[-1].endswith("0 []"), done.stderr
