"""Calls per second the local API server answers on this machine, against a trivial baseline.

Client processes (http.client on kept-alive connections, bodies signed once up front) drive a
bounded number of calls each; the baseline is `GET /_admin/ping` measured the same way in the
same run, so the ratio shows what the API's own work costs. Usage:
`python -m bench emulator` or `python -m bench.emulator --clients 3 --calls 1500`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from picpik.signing import sign
from tests.support.emulator_server import EmulatorProcess, image_data_uri, noise_png_uri

__all__ = ["main"]


@dataclass(frozen=True)
class Workload:
    name: str
    method: str
    path: str
    body: bytes | None = None
    share: float = 1.0  # of the --calls count: large bodies get fewer calls


def _signed(emulator: EmulatorProcess, params: dict[str, Any]) -> bytes:
    body = {"PublicKey": emulator.public_key, **params}
    body["Signature"] = sign(body, emulator.private_key)
    return json.dumps(body, separators=(",", ":")).encode()


def _workloads(emulator: EmulatorProcess) -> list[Workload]:
    submit = _signed(emulator, {"Action": "RemoveBackground", "RawImage": image_data_uri(64, 48)})
    large = _signed(emulator, {"Action": "RemoveBackground", "RawImage": noise_png_uri(600)})
    uids = [emulator.call("RemoveBackground", {"RawImage": image_data_uri()}).json()["TaskUID"]
            for _ in range(100)]
    return [
        Workload("baseline GET /_admin/ping", "GET", "/_admin/ping"),
        Workload("ListRunningTasks", "POST", "/",
                 _signed(emulator, {"Action": "ListRunningTasks"})),
        Workload("ListTasksDetails, 1 TaskUID", "POST", "/",
                 _signed(emulator, {"Action": "ListTasksDetails", "TaskUIDList": uids[:1]})),
        Workload("ListTasksDetails, 100 TaskUIDs", "POST", "/",
                 _signed(emulator, {"Action": "ListTasksDetails", "TaskUIDList": uids})),
        Workload("RemoveBackground, 64x48 PNG", "POST", "/", submit),
        Workload(f"RemoveBackground, {len(large) / 1e6:.1f} MB body", "POST", "/", large, 0.02),
    ]


def _client(url: str, work: Workload, calls: int, start: Any, out: Any) -> None:
    """One client process: warm up, wait for the others, run `calls` calls, report times."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    headers = {"Content-Type": "application/json"} if work.body else {}
    latencies = []

    def one() -> None:
        conn.request(work.method, work.path, body=work.body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        if response.status != 200 or (work.body and b'"RetCode":0' not in payload):
            raise RuntimeError(f"{work.name}: HTTP {response.status} {payload[:200]!r}")

    for _ in range(20):
        one()
    start.wait()
    began = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        one()
        latencies.append(time.perf_counter() - t0)
    out.put((began, time.perf_counter(), statistics.median(latencies)))
    conn.close()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; Linux /proc, 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(url: str, work: Workload, clients: int, calls: int) -> tuple[float, float]:
    """Calls per second across all clients, and the median latency of one call."""
    ctx = mp.get_context("fork")
    start, out = ctx.Barrier(clients), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(url, work, calls, start, out))
             for _ in range(clients)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join()
    elapsed = max(end for _, end, _ in results) - min(began for began, _, _ in results)
    return clients * calls / elapsed, statistics.median(lat for _, _, lat in results)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator")
    parser.add_argument("--clients", type=int, default=3, help="client processes (default 3)")
    parser.add_argument("--calls", type=int, default=1000, help="calls per client (default 1000)")
    args = parser.parse_args(list(argv) if argv is not None else [])
    with EmulatorProcess(queue_s=0.05, run_s=0.1) as emulator:
        workloads = _workloads(emulator)
        print(f"{args.clients} client processes x {args.calls} calls each, kept-alive connections")
        assert emulator.process is not None
        pid, baseline, baseline_cpu = emulator.process.pid, 0.0, 0.0
        for work in workloads:
            cpu_before, calls = _cpu_s(pid), max(10, int(args.calls * work.share))
            rate, latency = _measure(emulator.base_url, work, args.clients, calls)
            # Server CPU per call: steadier than calls/s on a machine shared with other work.
            # (The 20 warm-up calls of each client are in it, by a few percent.)
            cpu_ms = (_cpu_s(pid) - cpu_before) * 1000 / (args.clients * (calls + 20))
            baseline, baseline_cpu = baseline or rate, baseline_cpu or cpu_ms
            print(f"  {work.name:32s} {rate:6.0f} calls/s x{rate / baseline:.2f}"
                  f" | server CPU {cpu_ms:.3f} ms/call x{cpu_ms / (baseline_cpu or 1):.2f}"
                  f" | median latency {latency * 1000:.2f} ms", flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
