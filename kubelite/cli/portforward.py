"""`kubelite port-forward POD [LOCAL:]REMOTE ...`: local ports forwarded into a pod, on the node.

Owns: the ports' syntax as kubectl reads it (`8080:80`, `80`, `:80` for a free local port), the
listeners (`--address`, default localhost: 127.0.0.1 and ::1 when the host has it), and for each
accepted connection a dial of localhost:REMOTE inside the pod's network namespace as it is at that
moment (the sandbox's record read each time, `runtime.view`; the socket made in a worker thread,
`runtime.netns`), then bytes copied both ways. No API: the store says which pod (by
`runtime.targets`' rules, as `exec` finds it, with kubectl's refusal of a pod that is not Running),
the run directory where its namespace is. A dial the pod refuses ends that connection (one line on stderr) and the
forward goes on; a pod with no running sandbox ends the forward, as kubectl's does ("lost connection
to pod"). Runs until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from kubelite.cli import config
from kubelite.errors import RuntimeError_, UsageError
from kubelite.runtime import netns, targets
from kubelite.runtime.view import RuntimeView

READ_BYTES = 64 * 1024


@dataclass(frozen=True)
class PortPair:
    local: int   # 0: a free port
    remote: int


def parse_ports(specs: list[str]) -> list[PortPair]:
    """kubectl's `[LOCAL:]REMOTE` forms; UsageError naming the bad one."""
    pairs = []
    for spec in specs:
        local, colon, remote = spec.partition(":")
        if not colon:
            local, remote = spec, spec
        try:
            pair = PortPair(int(local) if local else 0, int(remote))
        except ValueError:
            raise UsageError(f"invalid port {spec!r}: give [LOCAL:]REMOTE, e.g. 8080:80") from None
        if not 0 <= pair.local < 65536 or not 0 < pair.remote < 65536:
            raise UsageError(f"invalid port {spec!r}: ports are 1-65535")
        pairs.append(pair)
    return pairs


def parse_addresses(text: str) -> list[tuple[str, bool]]:
    """(address, required): `localhost` is 127.0.0.1 and ::1, each optional as long as one binds (as
    kubectl's); an IP named is required."""
    found: list[tuple[str, bool]] = []
    for item in (a.strip() for a in text.split(",")):
        if not item:
            continue
        if item == "localhost":
            found += [("127.0.0.1", False), ("::1", False)]
            continue
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in item else socket.AF_INET, item)
        except OSError:
            raise UsageError(f"invalid address {item!r}: give IP addresses or localhost") from None
        found.append((item, True))
    if not found:
        raise UsageError("--address names no address")
    return found


def _pod_uid(args: argparse.Namespace) -> tuple[str, str]:
    """("NAMESPACE/NAME", uid) of the pod to forward to, by `runtime.targets`' rules (kubectl's refusal
    of a pod that is not running first)."""
    from kubelite.cli import containers

    pod = containers.find_pod(args)
    try:
        targets.refuse_phase(pod, "port-forward")
    except targets.TargetError as exc:
        containers.refuse(exc)
    meta = pod["metadata"]
    return f"{meta.get('namespace') or 'default'}/{meta['name']}", meta["uid"]


def run(args: argparse.Namespace) -> int:
    pairs = parse_ports(args.ports)
    addresses = parse_addresses(args.address)
    name, uid = _pod_uid(args)
    view = RuntimeView(root=config.root(args.root), run_dir=config.run_dir(args.run_dir))
    view.pod_netns(uid)   # RuntimeError_ now, not at the first connection, when it has no sandbox
    forwarder = Forwarder(view, uid, name)
    return asyncio.run(forwarder.run(pairs, addresses))


class Forwarder:
    """The listeners of one `port-forward` and the connections they accept."""

    def __init__(self, view: RuntimeView, uid: str, name: str) -> None:
        self.view, self.uid, self.name = view, uid, name
        self.lost: asyncio.Future[str] | None = None

    def _socket(self, family: int) -> socket.socket:
        return netns.socket_at(self.view.pod_netns(self.uid), family)

    async def run(self, pairs: list[PortPair], addresses: list[tuple[str, bool]]) -> int:
        loop = asyncio.get_running_loop()
        self.lost = loop.create_future()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: self.lost.done() or self.lost.set_result(""))
        servers = []
        try:
            for pair in pairs:
                chosen = [pair.local]   # a free port is chosen by the first listener, shared by the rest

                def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, remote: int = pair.remote,
                            chosen: list[int] = chosen) -> Any:
                    return self._handle(r, w, chosen[0], remote)

                bound = 0
                for host, required in addresses:
                    try:
                        server = await asyncio.start_server(handler, host, chosen[0], reuse_address=True)
                    except OSError as exc:
                        if required:
                            raise UsageError(f"unable to listen on {host}:{chosen[0]}: {exc.strerror or exc}") \
                                from None
                        continue
                    servers.append(server)
                    bound += 1
                    chosen[0] = chosen[0] or server.sockets[0].getsockname()[1]
                    shown = f"[{host}]" if ":" in host else host
                    print(f"Forwarding from {shown}:{chosen[0]} -> {pair.remote}", flush=True)
                if not bound:
                    raise UsageError(f"unable to listen on any address for port {pair.local or pair.remote}")
            message = await self.lost
        finally:
            for server in servers:
                server.close()
        if message:
            print(f"error: {message}", file=sys.stderr)
            return 1
        return 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, local: int,
                      remote: int) -> None:
        print(f"Handling connection for {local}", flush=True)
        try:
            try:
                pod_reader, pod_writer = await netns.connect(self._socket, remote)
            except RuntimeError_ as exc:
                if self.lost is not None and not self.lost.done():
                    self.lost.set_result(f"lost connection to pod {self.name}: {exc}")
                return
            except OSError as exc:
                print(f"error forwarding port {remote} to pod {self.name}: {exc}", file=sys.stderr, flush=True)
                return
            try:
                await asyncio.gather(_copy(reader, pod_writer), _copy(pod_reader, writer))
            finally:
                pod_writer.transport.abort()
        finally:
            writer.transport.abort()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side (the peer may still answer)."""
    try:
        while chunk := await reader.read(READ_BYTES):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()
