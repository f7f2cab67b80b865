"""Pull benchmark: `kubelite image pull` of a multi-layer image from a registry on loopback, beside
`skopeo copy` of the same image into a directory, in the same run.

Measures (figures are printed, never asserted):

1. Time and peak memory of a pull of a four-layer image (three layers of 32 MiB of incompressible
   bytes, gzip level 1, and a small one) from Debian's `docker-registry` on a free 127.0.0.1
   port: `kubelite image pull` as a subprocess on an empty state root each round; the reference
   is `skopeo copy docker://… dir:<empty dir>` of the same image in the same round (alternating
   which goes first). Peak memory is the maximum resident set size GNU time reports for the command. Note
   the two do different work: kubelite also unpacks and verifies every layer (the diff_ids),
   skopeo only stores the blobs.
2. Memory must not grow with layer size: the peak RSS of pulls of a one-layer image of 16 MiB and
   of 256 MiB (incompressible), kubelite and skopeo alike.

The registry, its storage, the images pushed (with skopeo from OCI layouts written here) and every
state root live below one temporary directory that is removed at the end; the registry gets SIGTERM.
No root needed; needs docker-registry and skopeo (`scripts/bootstrap test` as root installs them).
About a minute and a half. Run: `bench/run pull`, or `.venv/bin/python -m bench.bench_pull`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, Row, duration, print_table, record_summary, summarize

MIB = 1 << 20
TIME = "/usr/bin/time"   # GNU time (Debian's `time`, installed by scripts/bootstrap test)
ROUNDS = 5
LAYERS_MIB = (32, 32, 32)
SIZES_MIB = (16, 256)


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mib: float


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> Run:
    """Run `cmd` under GNU time: its wall time and peak RSS. (The rusage of a child forked straight from
    this process would count this process's own memory, which the child shares until it execs.)"""
    report = tempfile.NamedTemporaryFile(prefix="kubelite-bench-time-", delete=False)
    report.close()
    try:
        start = time.perf_counter()
        proc = subprocess.run([TIME, "-o", report.name, "-f", "%M", *cmd], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"bench_pull: {cmd[0]} failed ({proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
        peak_kib = int(Path(report.name).read_text().split()[-1])
    finally:
        os.unlink(report.name)
    return Run(seconds, peak_kib / 1024)


class _Noise(io.RawIOBase):
    """`size` incompressible bytes, made as they are read (1 MiB at a time)."""

    def __init__(self, size: int, seed: int) -> None:
        self.left, self.rng = size, random.Random(seed)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(self.left, MIB if n is None or n < 0 else min(n, MIB))
        self.left -= n
        return self.rng.randbytes(n)


class _Hashing(io.RawIOBase):
    """A writer that hashes and counts what passes through it."""

    def __init__(self, out: Any) -> None:
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


def stream_layout(directory: Path, layers: list[tuple[str, int]], seed: int) -> str:
    """An OCI layout whose layers (name, bytes of noise) are written as gzip blobs without holding them
    in memory; returns `oci:<dir>:latest` for skopeo."""
    from kubelite.runtime.images import host_architecture

    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, Any]:
        hex_ = hashlib.sha256(data).hexdigest()
        (blobs / hex_).write_bytes(data)
        return {"digest": f"sha256:{hex_}", "size": len(data)}

    descs, diff_ids = [], []
    for i, (name, size) in enumerate(layers):
        tmp = directory / "layer.tmp"
        with open(tmp, "wb") as raw:
            blob = _Hashing(raw)
            with gzip.GzipFile(fileobj=blob, mode="wb", compresslevel=1, mtime=0) as gz:
                tar = _Hashing(gz)
                with tarfile.open(fileobj=tar, mode="w|",  # type: ignore[call-overload]
                                  format=tarfile.PAX_FORMAT) as tf:
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime = size, 0o644, 1672531200
                    tf.addfile(info, _Noise(size, seed + i))
        os.rename(tmp, blobs / blob.sha.hexdigest())
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": f"sha256:{blob.sha.hexdigest()}", "size": blob.size})
        diff_ids.append(f"sha256:{tar.sha.hexdigest()}")
    config = json.dumps({"architecture": host_architecture(), "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
                           "layers": descs}).encode()
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return f"oci:{directory}:latest"


def kubelite_pull(ref: str, root: Path) -> Run:
    shutil.rmtree(root, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return run_measured([sys.executable, "-m", "kubelite.cli.main", "image", "pull", "--root", str(root), "-q", ref],
                        env=env)


def skopeo_copy(ref: str, dest: Path) -> Run:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    return run_measured(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"dir:{dest}"])


def mib(values: list[float]) -> str:
    return f"{sorted(values)[len(values) // 2]:.0f} MiB"


def main() -> None:
    from tests.registries import Registry

    base = Path(tempfile.mkdtemp(prefix="kubelite-bench-pull-"))
    registry = Registry(base / "registry")
    try:
        registry.start()
        layers = [(f"layer{i}.bin", size * MIB) for i, size in enumerate(LAYERS_MIB)] + [("small.txt", 6)]
        registry.push(stream_layout(base / "multi", layers, seed=1), "bench/multi:v1")
        for size in SIZES_MIB:
            registry.push(stream_layout(base / f"one-{size}", [("data.bin", size * MIB)], seed=100 + size),
                          f"bench/one:{size}")
            shutil.rmtree(base / f"one-{size}")
        shutil.rmtree(base / "multi")
        multi = f"{registry.host}/bench/multi:v1"
        ours, theirs = [], []
        kubelite_pull(multi, base / "warm")         # warm the registry's and the page cache's view of the blobs
        for i in range(ROUNDS):
            pair = [lambda: ours.append(kubelite_pull(multi, base / "state")),
                    lambda: theirs.append(skopeo_copy(multi, base / "dir"))]
            for step in (pair if i % 2 == 0 else reversed(pair)):
                step()
        by_size: dict[int, tuple[list[Run], list[Run]]] = {}
        for size in SIZES_MIB:
            ref = f"{registry.host}/bench/one:{size}"
            by_size[size] = ([kubelite_pull(ref, base / "state") for _ in range(3)],
                             [skopeo_copy(ref, base / "dir") for _ in range(3)])
    finally:
        registry.stop()
        shutil.rmtree(base, ignore_errors=True)

    total = sum(LAYERS_MIB)
    t_ours, t_theirs = summarize([r.seconds for r in ours]), summarize([r.seconds for r in theirs])
    rows = [
        Row("1. pull of a 4-layer image (3 x 32 MiB + 1 small, gzip) from docker-registry on 127.0.0.1", "", ""),
        Row.of("  kubelite image pull (fetch, verify, unpack), wall time", t_ours, "-",
               f"skopeo copy to dir: {duration(t_theirs.median_s)} median, {duration(t_theirs.p95_s)} p95"),
        Row("  kubelite image pull, peak RSS", mib([r.peak_rss_mib for r in ours]), "-", "-",
            f"skopeo copy to dir: {mib([r.peak_rss_mib for r in theirs])}"),
        Row(f"  throughput ({total} MiB of layers)", f"{total / t_ours.median_s:.0f} MiB/s", "-", "-",
            f"skopeo: {total / t_theirs.median_s:.0f} MiB/s"),
        Row("2. peak RSS by layer size (one incompressible layer, gzip), median of 3", "", ""),
    ]
    for size, (k, s) in by_size.items():
        rows.append(Row(f"  {size} MiB layer: kubelite image pull, peak RSS", mib([r.peak_rss_mib for r in k]), "-",
                        "flat in layer size", f"skopeo: {mib([r.peak_rss_mib for r in s])}"))
    notes = [f"n={ROUNDS} rounds, kubelite and skopeo alternating which goes first; a fresh state root / dir each",
             "peak RSS = GNU time's maximum resident set size of the command; kubelite's includes the Python "
             "interpreter",
             "kubelite unpacks every layer into the image store too; skopeo copy to dir only writes the blobs"]
    print_table("bench_pull: image pull from a registry on loopback, beside skopeo copy", rows, notes=notes)
    small, large = by_size[SIZES_MIB[0]][0], by_size[SIZES_MIB[-1]][0]
    record_summary("pull", [
        Row.of("8. pull: 4-layer image (96 MiB) from a loopback registry", t_ours, "-",
               f"skopeo copy: {duration(t_theirs.median_s)}"),
        Row(f"8. pull: peak RSS, {SIZES_MIB[0]} MiB vs {SIZES_MIB[-1]} MiB layer",
            f"{mib([r.peak_rss_mib for r in small])} / {mib([r.peak_rss_mib for r in large])}", "-",
            "flat in layer size", "-"),
    ])


if __name__ == "__main__":
    main()
