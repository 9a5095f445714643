#!/usr/bin/env python3
"""Client CPU per tool round-trip: `clarion chat` against a plain Python loop with the
official `openai` SDK, both talking to the same scripted Chat Completions server on
loopback. Driven by scripts/bench-roundtrip.sh; figures in docs/benchmarks.md.

    bench_roundtrip.py server PORT            the scripted server (run by `main`)
    bench_roundtrip.py sdk BASE_URL N MODE    the Python hand loop (run by `main`)
    bench_roundtrip.py main CLARION N_FRESH N_LONG   everything, prints the tables
    bench_roundtrip.py compare N REPS CLARION...      several builds and the Python loop in
                                                      turn, REPS times, N fresh turns each
    bench_roundtrip.py paired N REPS CLARION...       the same, interleaved turn by turn: every
                                                      client does turn i before any does i+1

The server answers a request with a tool call of `calculate_savings_timeline` when no tool
result follows the user's last question, and with a short text when one does, so every user turn is one round trip: request -> tool call -> tool -> request ->
reply. It runs in its own process; only the client's CPU is measured.

Clarion's CPU is read per turn from /proc/PID/task/*/schedstat (nanoseconds, every thread
of the process) while the driver feeds one line and waits for the reply line, and in total
from wait4() when the process ends. The Python loop measures time.process_time() around
each round trip; its total (interpreter start and `import openai` included) comes from
wait4() too. Only ratios from one run count: the machine is shared.
"""

import http.server
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ARGS = {"goal_amount": 12000, "monthly_income": 5000, "monthly_savings": 1000}
USER = "I earn 5000 a month after tax and save 1000 a month. How long until I have 12000?"
REPLY = "At 1000 a month you reach 12000 in 12 months (1 year)."
TOOL = {
    "type": "function",
    "function": {
        "name": "calculate_savings_timeline",
        "description": "Months and years needed to reach a savings goal at a monthly savings rate.",
        "parameters": {
            "type": "object",
            "properties": {
                "goal_amount": {"type": "number", "exclusiveMinimum": 0},
                "monthly_income": {"type": "number", "minimum": 0},
                "monthly_savings": {"type": "number", "exclusiveMinimum": 0},
            },
            "required": ["goal_amount", "monthly_income", "monthly_savings"],
        },
    },
}
SYSTEM = (
    "You are a personal finance assistant. Always answer by calling a tool; never "
    "calculate yourself.\n- Saving for a goal, \"how long\": calculate_savings_timeline"
)


# ---- the scripted server ------------------------------------------------------------------


class Scripted(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real provider
    calls = 0
    lock = threading.Lock()
    sizes = []  # (request body bytes, messages in the request)

    def log_message(self, *args):
        pass

    def send_body(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # /stats: the request sizes so far; ?reset=1 clears them
        with Scripted.lock:
            body = json.dumps(Scripted.sizes).encode()
            if "reset" in self.path:
                Scripted.sizes = []
        self.send_body(200, body)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        request = json.loads(raw)
        messages = request["messages"]
        with Scripted.lock:
            Scripted.calls += 1
            n = Scripted.calls
            Scripted.sizes.append((len(raw), len(messages)))
        # A text reply once the tool has answered since the user's question (Clarion adds
        # a context message after the tool output, so the tool is not always last).
        asked = max(i for i, m in enumerate(messages) if m.get("content") == USER)
        if any(m["role"] == "tool" for m in messages[asked:]):
            message = {"role": "assistant", "content": REPLY}
            finish = "stop"
        else:
            call = {
                "id": f"call_{n}",
                "type": "function",
                "function": {
                    "name": "calculate_savings_timeline",
                    "arguments": json.dumps(ARGS),
                },
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        base = {"id": f"chatcmpl-{n}", "created": 1700000000, "model": "x"}
        if not request.get("stream"):
            choice = {"index": 0, "message": message, "finish_reason": finish}
            body = dict(base, object="chat.completion", choices=[choice], usage=usage)
            self.send_body(200, json.dumps(body).encode())
            return
        delta = dict(message)
        if "tool_calls" in delta:
            delta["tool_calls"] = [dict(delta["tool_calls"][0], index=0)]
        chunks = [
            {"index": 0, "delta": delta, "finish_reason": None},
            {"index": 0, "delta": {}, "finish_reason": finish},
        ]
        out = b""
        for choice in chunks:
            chunk = dict(base, object="chat.completion.chunk", choices=[choice])
            out += b"data: " + json.dumps(chunk).encode() + b"\n\n"
        chunk = dict(base, object="chat.completion.chunk", choices=[], usage=usage)
        out += b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"
        self.send_body(200, out, "text/event-stream")


def serve(port):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Scripted)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


# ---- the Python hand loop -------------------------------------------------------------------


def savings_timeline(goal_amount, monthly_income, monthly_savings):
    months = -(-goal_amount // monthly_savings)
    return {
        "months": months,
        "years": round(months / 12, 1),
        "attainable": monthly_savings <= monthly_income and months <= 360,
        "horizon_years": 30,
        "savings_rate_percent": round(100 * monthly_savings / monthly_income, 2),
    }


def definition_parts(definition):
    """The system message, tools and options of DEFINITION (`clarion export --format
    chat-completions` of the flow), so the hand loop's requests carry what Clarion's do;
    the built-in ones without it."""
    if not definition:
        return SYSTEM, [TOOL], {"temperature": 0.2}
    with open(definition) as f:
        exported = json.load(f)
    options = {k: exported[k] for k in ("parallel_tool_calls", "temperature")}
    return exported["messages"][0]["content"], exported["tools"], options


def round_trip(client, history, tools, options):
    """The hand loop's round trip: ask, run the tools asked for, ask again until a reply;
    the history grows with every message. Returns the reply message."""
    while True:
        response = client.chat.completions.create(
            model="x", messages=history, tools=tools, **options
        )
        message = response.choices[0].message
        history.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            return message
        for call in message.tool_calls:
            args = json.loads(call.function.arguments)
            result = savings_timeline(**args)
            history.append(
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}
            )


def sdk(base_url, n, mode, definition=None):
    """N round trips; MODE `fresh` starts each from an empty history, `long` keeps one.
    Prints the CPU seconds of each round trip as JSON."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="x")
    system, tools, options = definition_parts(definition)
    cpu = []
    history = [{"role": "system", "content": system}]
    for _ in range(int(n)):
        start = time.process_time()
        if mode == "fresh":
            history = [{"role": "system", "content": system}]
        history.append({"role": "user", "content": USER})
        message = round_trip(client, history, tools, options)
        assert message.content == REPLY, message.content
        cpu.append(time.process_time() - start)
    print(json.dumps(cpu))


def sdk_stepped(base_url, definition):
    """The hand loop driven as `clarion chat` is: a round trip per line read (`/reset`
    empties the history), the reply on stdout. For `paired`."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="x")
    system, tools, options = definition_parts(definition)
    history = [{"role": "system", "content": system}]
    for line in sys.stdin:
        if line.strip() == "/reset":
            history = [{"role": "system", "content": system}]
            continue
        history.append({"role": "user", "content": line.rstrip("\n")})
        message = round_trip(client, history, tools, options)
        print(message.content, flush=True)


# ---- the driver -----------------------------------------------------------------------------


def task_cpu(pid):
    """CPU seconds of every live thread of PID (schedstat: nanoseconds on the CPU)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return total / 1e9


def wait_cpu(proc):
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


class Stepped:
    """A client fed one user line per turn (`clarion chat`, or the Python loop driven a
    line at a time); the CPU of each turn from schedstat, every thread of the process."""

    def __init__(self, command):
        env = dict(os.environ, OPENAI_API_KEY="x", NO_COLOR="1")
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env)
        self.buffered = b""
        self.before = None
        self.start_cpu = None
        self.per_turn = []

    def line(self):
        out = self.proc.stdout
        while b"\n" not in self.buffered:
            select.select([out], [], [])
            chunk = os.read(out.fileno(), 65536)
            if not chunk:
                raise SystemExit(f"{self.proc.args[0]} ended early "
                                 f"(turn {len(self.per_turn) + 1})")
            self.buffered += chunk
        line, self.buffered = self.buffered.split(b"\n", 1)
        return line.decode()

    def turn(self, reset):
        """One round trip; `reset` starts it on a fresh thread."""
        if reset:
            self.proc.stdin.write(b"/reset\n")
        self.proc.stdin.write(USER.encode() + b"\n")
        self.proc.stdin.flush()
        if self.before is None:
            self.before = task_cpu(self.proc.pid)  # after start-up: the flow is loaded by now
            self.start_cpu = self.before
        line = self.line()
        while not line.strip():
            line = self.line()
        assert REPLY in line, line
        after = task_cpu(self.proc.pid)
        self.per_turn.append(after - self.before)
        self.before = after

    def close(self):
        """Ends the input; the process's total CPU (start-up included) from wait4()."""
        self.proc.stdin.close()
        total = wait_cpu(self.proc)
        assert self.proc.returncode == 0, self.proc.returncode
        return total


def clarion_chat(clarion, base_url, n, mode, store, extra):
    """Runs `clarion chat` for N turns in lockstep; returns (per-turn CPU, total CPU, the
    CPU start-up took)."""
    chat = Stepped([clarion, "chat", "flows/personal-finance.toml", "--base-url", base_url,
                    "--model", "x", "--store", store, *extra])
    for turn in range(n):
        chat.turn(mode == "fresh" and turn > 0)
    total = chat.close()
    return chat.per_turn, total, chat.start_cpu


def python_loop(base_url, n, mode, python, definition):
    proc = subprocess.Popen([python, __file__, "sdk", base_url, str(n), mode, definition],
                            stdout=subprocess.PIPE)
    per_turn = json.loads(proc.stdout.read())
    total = wait_cpu(proc)
    assert proc.returncode == 0
    return per_turn, total


def stats(port, reset=True):
    url = f"http://127.0.0.1:{port}/stats" + ("?reset=1" if reset else "")
    with urllib.request.urlopen(url) as r:
        return json.loads(r.read())


def export_history(db, out):
    """The longest thread of DB as a JSON array of messages, for examples/bench_history."""
    import sqlite3

    conn = sqlite3.connect(db)
    (thread,) = conn.execute("SELECT thread_id FROM messages GROUP BY thread_id "
                             "ORDER BY count(*) DESC LIMIT 1").fetchone()
    rows = conn.execute("SELECT id, run_id, created_at, body FROM messages "
                        "WHERE thread_id = ? ORDER BY seq", (thread,))
    messages = [dict(json.loads(body), id=id, run_id=run_id, created_at=created_at)
                for id, run_id, created_at, body in rows]
    with open(out, "w") as f:
        json.dump(messages, f)
    print(f"(the {len(messages)} messages of the long thread: {out})", file=sys.stderr)


def ms(seconds):
    return f"{seconds * 1e3:.2f}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_up(clarion, prefix):
    """The scripted server on a free port, a work directory, and the flow's exported
    definition there (what the Python loop sends)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "server", str(port)],
                              stdout=subprocess.PIPE)
    server.stdout.readline()
    work = tempfile.mkdtemp(prefix=prefix)
    definition = f"{work}/definition.json"
    with open(definition, "wb") as f:
        f.write(subprocess.run([clarion, "export", "--format", "chat-completions",
                                "flows/personal-finance.toml"],
                               check=True, capture_output=True).stdout)
    return server, port, f"http://127.0.0.1:{port}/v1", work, definition


def main(clarion, n_fresh, n_long):
    n_fresh, n_long = int(n_fresh), int(n_long)
    python = os.environ.get("CLARION_SDK_PYTHON", sys.executable)
    server, port, base_url, work, definition = set_up(clarion, "clarion-bench-")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    try:
        # 1. fresh thread per turn, interleaved: clarion (stream / no-stream), Python, twice.
        rows = {}
        for rep in range(2):
            for name, run in [
                ("clarion chat (streaming)",
                 lambda: clarion_chat(clarion, base_url, n_fresh, "fresh",
                                      f"{work}/fresh-s{rep}.db", [])),
                ("clarion chat --no-stream",
                 lambda: clarion_chat(clarion, base_url, n_fresh, "fresh",
                                      f"{work}/fresh-n{rep}.db", ["--no-stream"])),
                ("python openai SDK loop",
                 lambda: python_loop(base_url, n_fresh, "fresh", python, definition)),
            ]:
                result = run()
                stats(port)
                rows.setdefault(name, []).append(result)
        print(f"\n## fresh thread per turn (/reset), {n_fresh} turns, 2 runs interleaved")
        print("| client | run | median per round trip (ms CPU) | mean, turns 2.. | "
              "process total / N (start-up included) |")
        print("| --- | --- | --- | --- | --- |")
        medians = {}
        for name, results in rows.items():
            for rep, result in enumerate(results):
                per_turn, total = result[0], result[1]
                med = statistics.median(per_turn[1:])
                medians.setdefault(name, []).append(med)
                print(f"| {name} | {rep + 1} | {ms(med)} | "
                      f"{ms(statistics.mean(per_turn[1:]))} | {ms(total / n_fresh)} |")
        py = medians["python openai SDK loop"]
        for name in ("clarion chat (streaming)", "clarion chat --no-stream"):
            ratios = [c / p for c, p in zip(medians[name], py)]
            print(f"ratio {name} / python (median, per run): "
                  + ", ".join(f"{r:.3f} (1/{1 / r:.1f})" for r in ratios))

        # 2. one long thread.
        print(f"\n## one thread, {n_long} turns")
        windows = [(1, 20), (n_long // 2 - 9, n_long // 2 + 10), (n_long - 19, n_long)]
        print("| client | " + " | ".join(f"turns {max(a, 2)}–{b}: median ms CPU"
                                          for a, b in windows)
              + " | last / first |")
        print("| --- |" + " --- |" * (len(windows) + 1))
        bodies = {}
        for name, run in [
            ("clarion chat (streaming)",
             lambda: clarion_chat(clarion, base_url, n_long, "long", f"{work}/long-s.db", [])),
            ("clarion chat --no-stream",
             lambda: clarion_chat(clarion, base_url, n_long, "long", f"{work}/long-n.db",
                                  ["--no-stream"])),
            ("python openai SDK loop", lambda: python_loop(base_url, n_long, "long", python, definition)),
        ]:
            per_turn = run()[0]
            bodies[name] = stats(port)
            if name == "clarion chat (streaming)":
                export_history(f"{work}/long-s.db",
                               os.environ.get("HISTORY_OUT", f"{work}/long-thread.json"))
            meds = [statistics.median(per_turn[a - 1:b]) for a, b in windows]
            if windows[0][0] == 1:  # the first turn carries one-off set-up
                meds[0] = statistics.median(per_turn[1:windows[0][1]])
            print(f"| {name} | " + " | ".join(ms(m) for m in meds)
                  + f" | {meds[-1] / meds[0]:.1f}× |")
        print("\nrequest bodies the server received (bytes; two requests per turn: "
              "first, second)")
        for name, sizes in bodies.items():
            first, last = sizes[:2], sizes[-2:]
            print(f"- {name}: turn 1 {first[0][0]} + {first[1][0]} B "
                  f"({first[1][1]} messages), turn {n_long} {last[0][0]} + {last[1][0]} B "
                  f"({last[1][1]} messages); total {sum(s for s, _ in sizes) / 1e6:.1f} MB")
    finally:
        server.terminate()
        server.wait()


def print_ratios(rows, binaries, reps):
    """The medians per run of each client, then each build's ratio to the Python loop."""
    print("| median CPU per round trip | " + " | ".join(f"run {r + 1}" for r in range(reps))
          + " |")
    print("| --- |" + " --- |" * reps)
    for name, meds in rows.items():
        print(f"| {name} | " + " | ".join(ms(m) for m in meds) + " |")
    for binary in binaries:
        ratios = [c / p for c, p in zip(rows[binary], rows["python"])]
        print(f"| ratio {binary} / python | "
              + " | ".join(f"{r:.3f} (1/{1 / r:.1f})" for r in ratios) + " |")


def compare(n, reps, *binaries):
    """Builds side by side: each binary (streaming, fresh threads) and the Python loop in
    turn, `reps` times, so a before and an after share the machine's load."""
    n, reps = int(n), int(reps)
    python = os.environ.get("CLARION_SDK_PYTHON", sys.executable)
    server, port, base_url, work, definition = set_up(binaries[0], "clarion-compare-")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs; {n} fresh turns, streaming")
    try:
        rows = {}
        for rep in range(reps):
            for i, binary in enumerate(binaries):
                per_turn = clarion_chat(binary, base_url, n, "fresh",
                                        f"{work}/b{i}-{rep}.db", [])[0]
                rows.setdefault(binary, []).append(statistics.median(per_turn[1:]))
                stats(port)
            per_turn = python_loop(base_url, n, "fresh", python, definition)[0]
            rows.setdefault("python", []).append(statistics.median(per_turn[1:]))
            stats(port)
        print_ratios(rows, binaries, reps)
    finally:
        server.terminate()
        server.wait()


def paired(n, reps, *binaries):
    """`compare`, interleaved turn by turn (the order reversed every other turn): the
    clients share the machine's moments, not only its minutes, so a ratio from one run is
    steadier. Each client's CPU is read the same way (schedstat, every thread)."""
    n, reps = int(n), int(reps)
    python = os.environ.get("CLARION_SDK_PYTHON", sys.executable)
    server, port, base_url, work, definition = set_up(binaries[0], "clarion-paired-")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs; {n} fresh turns, streaming, "
          "interleaved turn by turn")
    try:
        rows = {}
        for rep in range(reps):
            clients = [(binary, Stepped([binary, "chat", "flows/personal-finance.toml",
                                         "--base-url", base_url, "--model", "x",
                                         "--store", f"{work}/b{i}-{rep}.db"]))
                       for i, binary in enumerate(binaries)]
            clients.append(("python", Stepped([python, __file__, "sdk-stepped", base_url,
                                               definition])))
            for turn in range(n):
                for _, client in clients if turn % 2 == 0 else clients[::-1]:
                    client.turn(turn > 0)
            for name, client in clients:
                client.close()
                rows.setdefault(name, []).append(statistics.median(client.per_turn[1:]))
            stats(port)
        print_ratios(rows, binaries, reps)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    {"server": serve, "sdk": sdk, "sdk-stepped": sdk_stepped, "main": main,
     "compare": compare, "paired": paired}[sys.argv[1]](*sys.argv[2:])
