"""`kubectl get events -w`, `--watch-only` and `kubelite get events -w` on a real container that
crashes: the crash's events (Started, BackOff) arrive as they are written, within a bounded time.

The agent runs on the real runtime, stepped by a thread; the API server reads the same state root
(`Served`, as in the API's other real tests): the test only reads, it never steps the node itself.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.apinode import Stream, wait_for
from tests.real import REPO, container, pod
from tests.test_apiserver_real import busybox, served  # noqa: F401 (the fixtures: a real node with its API)

pytestmark = pytest.mark.real


def test_kubectl_and_kubelite_watch_events_see_a_crash_as_it_happens(served):
    served.node.write(pod("steady", container("app", "sleep 1000")))
    wait_for(lambda: served.node.running("steady", "app"), what="steady running", timeout=60)
    listed = served.stream("get", "events", "-w")
    only = served.stream("get", "events", "--watch-only")
    ours = Stream(subprocess.Popen([sys.executable, "-m", "kubelite.cli.main", "get", "events", "-w"],
                                   env=served.node.env(), cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True))
    try:
        # the list first: the steady pod's events, header and all
        listed.until(lambda line: "pod/steady" in line and "Started" in line, what="steady's Started (listed)")
        ours.until(lambda line: "pod/steady" in line and "Started" in line, what="steady's Started (kubelite)")
        served.node.write(pod("crashy", container("app", "sleep 0.5; exit 3"), restartPolicy="Always"))
        for stream, who in ((listed, "kubectl -w"), (only, "kubectl --watch-only"), (ours, "kubelite -w")):
            stream.until(lambda line: "pod/crashy" in line and "Started" in line, what=f"crashy Started ({who})",
                         timeout=45)
            stream.until(lambda line: "pod/crashy" in line and "BackOff" in line and "Warning" in line,
                         what=f"crashy's BackOff ({who})", timeout=45)
    finally:
        for stream in (listed, only, ours):
            stream.close()
    # what was written before the watch began is not printed again (steady's start)
    assert not any("pod/steady" in line and "Started" in line for line in only.seen), only.seen
    assert only.seen[0].split()[:3] == ["LAST", "SEEN", "TYPE"], only.seen


def test_an_events_watch_resumes_from_the_lists_resource_version(served):
    served.node.write(pod("steady", container("app", "sleep 1000")))
    wait_for(lambda: served.node.running("steady", "app"), what="steady running", timeout=60)
    import json

    listed = json.loads(served.kubectl("get", "--raw", "/api/v1/namespaces/default/events").stdout)
    rv = listed["metadata"]["resourceVersion"]
    assert all(int(e["metadata"]["resourceVersion"]) <= int(rv) for e in listed["items"])
    served.node.write(pod("second", container("app", "sleep 1000")))
    wait_for(lambda: served.node.running("second", "app"), what="second running", timeout=60)
    watched = served.kubectl("get", "--raw", f"/api/v1/namespaces/default/events?watch=true&resourceVersion={rv}"
                                             "&timeoutSeconds=2")
    lines = [json.loads(line) for line in watched.stdout.splitlines() if line.strip()]
    names = {line["object"]["involvedObject"]["name"] for line in lines}
    assert names == {"second"}, lines   # only what came after the list, nothing of steady's again
    assert all(int(line["object"]["metadata"]["resourceVersion"]) > int(rv) for line in lines)
