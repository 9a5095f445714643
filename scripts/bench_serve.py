#!/usr/bin/env python3
"""`clarion serve` on a long thread (issue 13, "Every request costs the whole thread"):
`GET /v1/threads/{id}/messages?limit=20` and `POST /v1/threads/{id}/messages` on a thread
of LONG messages against the same on a 10-message thread, interleaved, in one run.
Driven by scripts/bench-serve.sh; figures in docs/benchmarks.md.

    bench_serve.py CLARION [LONG] [REQUESTS]

The long thread is created with one `POST /v1/threads` carrying LONG user messages. Each
figure is the median wall time of REQUESTS requests on one kept-alive connection, plus the
server's CPU per request (from /proc/PID/stat, 10 ms ticks, over all requests of a kind).
"""

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

KEY = "sk-bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(clarion, long=100_000, requests=200):
    long, requests = int(long), int(requests)
    port = free_port()
    work = tempfile.mkdtemp(prefix="clarion-serve-bench-")
    env = dict(os.environ, BENCH_KEYS=KEY, OPENAI_API_KEY="x")
    server = subprocess.Popen(
        [clarion, "serve", "flows/personal-finance.toml", "--bind", f"127.0.0.1:{port}",
         "--store", f"{work}/threads.db", "--api-key-env", "BENCH_KEYS",
         "--max-body-bytes", str(200 * long + 10_000), "--request-timeout", "600",
         "--base-url", "http://127.0.0.1:9/v1", "--model", "x"],
        env=env, stderr=subprocess.PIPE,
    )
    try:
        while b"listening" not in server.stderr.readline():
            pass
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

        def call(method, path, body=None):
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, f"/v1{path}", body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            assert response.status == 200, (response.status, payload[:300])
            return json.loads(payload)

        def thread(n):
            messages = [{"role": "user", "content": f"message {i}: I save 1000 a month"}
                        for i in range(n)]
            start = time.perf_counter()
            thread = call("POST", "/threads", {"messages": messages})
            return thread["id"], time.perf_counter() - start

        short, _ = thread(10)
        big, created = thread(long)
        print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
              f"{os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs; creating the "
              f"{long:,}-message thread took {created:.2f} s")
        kinds = {
            "GET messages?limit=20": lambda t: call("GET", f"/threads/{t}/messages?limit=20"),
            "POST a message": lambda t: call("POST", f"/threads/{t}/messages",
                                             {"role": "user", "content": "and 12000?"}),
        }
        for _ in range(5):  # warm-up
            for request in kinds.values():
                request(short)
                request(big)
        print(f"\n| request ({requests} each, interleaved) | 10 messages: median | p90 "
              f"| {long:,} messages: median | p90 | ratio of medians | server CPU per "
              f"request, 10 / {long:,} |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, request in kinds.items():
            times = {short: [], big: []}
            used = {short: 0.0, big: 0.0}
            for _ in range(requests):
                for t in (short, big):
                    before = cpu(server.pid)
                    start = time.perf_counter()
                    request(t)
                    times[t].append(time.perf_counter() - start)
                    used[t] += cpu(server.pid) - before
            med = {t: statistics.median(v) for t, v in times.items()}
            p90 = {t: statistics.quantiles(v, n=10)[-1] for t, v in times.items()}
            print(f"| {name} | {med[short] * 1e3:.2f} ms | {p90[short] * 1e3:.2f} ms | "
                  f"{med[big] * 1e3:.2f} ms | {p90[big] * 1e3:.2f} ms | "
                  f"{med[big] / med[short]:.1f}× | {used[short] / requests * 1e3:.2f} / "
                  f"{used[big] / requests * 1e3:.2f} ms |")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main(*sys.argv[1:])
