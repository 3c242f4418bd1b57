#!/usr/bin/env python3
"""The parts of bench/run that are easier in Python than in bash.

  ports N                 print N free loopback ports
  mint DIR                an RS256 key, its JWKS (DIR/jwks.json) and a caller token (DIR/token)
  spawn ... -- CMD...     start the gateway, time it to its first /readyz 200, then stay its
                          parent until it exits (so bench/run can stop and reap it cleanly)
  cold ...                1,000 concurrent first POSTs to a fresh gateway
  report ...              the report, from the runs bench/run recorded
  faultmap MAPS           page-fault addresses (stdin, from `perf script -F addr`) by the
                          mapping of MAPS (a copy of /proc/PID/maps) they fell in
  symbols ...             the binary's functions a callgrind run executed, most costly first
                          (the link order of release builds, bench/symbol-order.txt)

Only the standard library, except `mint` (pyjwt + cryptography, from target/bench-venv).
Every loop here is bounded in count and in time.
"""

import argparse
import asyncio
import bisect
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

ISSUER = "https://bench.example/issuer"
AUDIENCE = "api://partner-gateway-bench"
KID = "bench-key-1"


# ----------------------------------------------------------------------------- ports
def cmd_ports(args):
    # Hold all the sockets at once so the N ports are distinct; the kernel does not hand an
    # ephemeral port straight back out, so the short window until they are bound is harmless.
    socks = []
    try:
        for _ in range(args.n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()


# ----------------------------------------------------------------------------- mint
def cmd_mint(args):
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=KID, use="sig", alg="RS256")
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "bench-caller",
        "oid": "bench-caller",
        "roles": ["Qualifications.ReadWrite"],
        "iat": now,
        "exp": now + 7200,
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})

    os.makedirs(args.dir, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(os.path.join(args.dir, "caller-key.pem"), pem, 0o600)
    # World-readable: nginx's workers (user nobody) serve it.
    _write(os.path.join(args.dir, "jwks.json"), json.dumps({"keys": [jwk]}).encode(), 0o644)
    _write(os.path.join(args.dir, "token"), token.encode(), 0o600)


def _write(path, data, mode):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


# ----------------------------------------------------------------------------- spawn
def cmd_spawn(args):
    """Spawn the gateway, poll /readyz every ~2 ms (10 s at most), write the result, then wait.

    The clock starts right before the process is created, so the time includes the exec,
    settings, the bind and the JWKS fetch: what an orchestrator's readiness probe would see.
    """
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    with open(args.log, "ab") as out, open(args.errlog, "ab") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    _write_atomically(args.pidfile, f"{proc.pid}\n")

    # Whoever stops us stops the gateway: pass the usual signals on.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: proc.send_signal(s))

    result = poll_ready(proc, args.host, args.port, t0, limit_s=10.0, interval_s=0.002)
    _write_atomically(args.ready_out, json.dumps(result) + "\n")
    # Stay the parent until the gateway exits: bench/run bounds how long that takes.
    sys.exit(proc.wait())


def poll_ready(proc, host, port, t0, limit_s, interval_s):
    first_answer_ms = None
    attempts = 0
    max_attempts = int(limit_s / interval_s) + 1  # the count bound; the time bound is below
    while attempts < max_attempts:
        elapsed = time.perf_counter() - t0
        if elapsed > limit_s:
            break
        if proc.poll() is not None:
            return {"ok": False, "why": f"gateway exited with {proc.returncode}", "attempts": attempts}
        attempts += 1
        conn = http.client.HTTPConnection(host, port, timeout=0.5)
        try:
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            resp.read()
            now_ms = (time.perf_counter() - t0) * 1000
            if first_answer_ms is None:
                first_answer_ms = now_ms
            if resp.status == 200:
                return {
                    "ok": True,
                    "ready_ms": round(now_ms, 2),
                    "first_answer_ms": round(first_answer_ms, 2),
                    "attempts": attempts,
                }
        except OSError:
            pass  # not listening yet
        finally:
            conn.close()
        time.sleep(interval_s)
    return {"ok": False, "why": f"no /readyz 200 within {limit_s} s", "attempts": attempts}


def _write_atomically(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- cold
def cmd_cold(args):
    """Open N connections first, then send every request at once: N concurrent first POSTs."""
    with open(args.token) as f:
        token = f.read().strip()
    body = b'{"qualification":"StateOwnedEntity"}'
    request = (
        f"POST {args.path} HTTP/1.1\r\n"
        f"Host: {args.host}:{args.port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    try:
        result = asyncio.run(asyncio.wait_for(_cold(args, request), timeout=args.timeout))
    except asyncio.TimeoutError:
        result = {"ok": False, "why": f"not done within {args.timeout} s"}
    print(json.dumps(result))


async def _cold(args, request):
    opened = await asyncio.gather(
        *(asyncio.open_connection(args.host, args.port) for _ in range(args.n)),
        return_exceptions=True,
    )
    conns = [c for c in opened if not isinstance(c, BaseException)]
    connect_errors = len(opened) - len(conns)

    t0 = time.perf_counter()
    for _reader, writer in conns:
        writer.write(request)
    await asyncio.gather(*(w.drain() for _r, w in conns), return_exceptions=True)
    sent_ms = (time.perf_counter() - t0) * 1000

    async def status_of(reader, writer):
        try:
            # Until EOF (we asked for Connection: close); an answer is a few hundred bytes,
            # so 64 reads is plenty, and the whole burst is under asyncio.wait_for anyway.
            data = b""
            for _ in range(64):
                more = await reader.read(65536)
                if not more:
                    break
                data += more
            line = data.split(b"\r\n", 1)[0].split()
            return int(line[1]) if len(line) >= 2 else "no-answer"
        finally:
            writer.close()

    statuses = await asyncio.gather(*(status_of(r, w) for r, w in conns), return_exceptions=True)
    done_ms = (time.perf_counter() - t0) * 1000
    counts = {}
    for s in statuses:
        key = str(s) if not isinstance(s, BaseException) else type(s).__name__
        counts[key] = counts.get(key, 0) + 1
    return {
        "ok": True,
        "requests": args.n,
        "connect_errors": connect_errors,
        "statuses": counts,
        "accepted_202": counts.get("202", 0),
        "all_sent_ms": round(sent_ms, 1),
        "all_answered_ms": round(done_ms, 1),
    }


# ----------------------------------------------------------------------------- report
TARGETS = ("direct", "proxy", "passthrough", "gateway")  # the order they run in, and are unpacked in
LABEL = {"direct": "direct (stand-in)", "proxy": "nginx-proxy",
         "passthrough": "actix-web + reqwest pass-through", "gateway": "gateway"}
# Whose CPU each target's runs are: the server wrk talks to.
SERVER = {"direct": "standin", "proxy": "proxy", "passthrough": "passthrough", "gateway": "gateway"}


def _med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(v, spec=".0f", none="n/a"):
    return none if v is None else format(v, spec)


def cmd_report(args):
    runs = [json.loads(line) for line in open(args.results) if line.strip()]
    meta = {}
    with open(args.meta) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    ready = [json.loads(line) for line in open(args.ready) if line.strip()]
    cold = json.load(open(args.cold))

    # (method, conc) phases in the order they ran.
    phases = []
    for r in runs:
        key = (r["method"], r["conc"])
        if key not in phases:
            phases.append(key)

    groups = {}
    for r in runs:
        w = r["wrk"]
        secs = w["duration_us"] / 1e6
        r["rps"] = w["requests"] / secs if secs > 0 else 0.0
        groups.setdefault((r["method"], r["conc"], r["target"]), []).append(r)

    def summary(method, conc, target):
        rs = groups.get((method, conc, target), [])
        if not rs:
            return None
        return {
            "rounds": [r["rps"] for r in rs],
            "rps": _med([r["rps"] for r in rs]),
            "p50_ms": _med([r["wrk"]["p50_us"] / 1000 for r in rs]),
            "p99_ms": _med([r["wrk"]["p99_us"] / 1000 for r in rs]),
            "max_ms": max(r["wrk"]["max_us"] / 1000 for r in rs),
            "sock_err": sum(r["wrk"][k] for r in rs for k in ("connect", "read", "write", "timeout")),
            "non2xx": sum(r["wrk"]["non2xx"] for r in rs),
            "requests": sum(r["wrk"]["requests"] for r in rs),
            "cpu": {
                role: _med([r["cpu_pct"].get(role, 0.0) for r in rs])
                for role in ("standin", "proxy", "passthrough", "gateway", "postgres", "wrk", "machine")
            },
            "log_bytes_per_req": _med(
                [r["gw_log_bytes"] / r["wrk"]["requests"] for r in rs if r["wrk"]["requests"]]
            ),
        }

    def cpu_us(s, target):
        """CPU of the server wrk talked to, per request answered, in µs."""
        if not s or not s["rps"] or not s["cpu"].get(SERVER[target]):
            return None
        return s["cpu"][SERVER[target]] / 100 * 1e6 / s["rps"]

    out = []
    p = out.append
    p(f"# partner-gateway benchmark, {meta.get('date', '?')}")
    p("")
    p(f"- command: `{meta.get('command', '?')}`")
    p(f"- machine: {meta.get('nproc', '?')} CPUs (`nproc`), {meta.get('cpu_model', '?')}, "
      f"kernel {meta.get('kernel', '?')}")
    p(f"- gateway: work tree at {meta.get('gateway_rev', '?')}, binary sha256 {meta.get('gateway_sha256', '?')[:16]}…, "
      f"{meta.get('gateway_workers', '?')}; extra env: `{meta.get('gateway_extra_env') or '(none)'}`; "
      f"store: {meta.get('store', 'sqlite')}; the POSTs cycle through {meta.get('customers', '?')} "
      "customers per wrk thread")
    p(f"- tools: {meta.get('nginx_version', '?')}, {meta.get('wrk_version', '?')}; "
      f"wrk -t2 --latency, {meta.get('rounds', '?')} round(s) × {meta.get('duration', '?')} s "
      f"per target, {meta.get('warmup', '?')} s warm-up before each, targets interleaved")
    p("- every server, wrk and this script share the same CPUs; CPU% below is of one CPU "
      "(200 % = both), machine % is of the whole machine")
    p("")

    pg = meta.get("store", "sqlite").startswith("postgres")
    for method, conc in phases:
        p(f"## {method} c={conc}")
        p("")
        p("| target | req/s (median) | req/s per round | p50 ms | p99 ms | max ms | socket errors | non-2xx "
          "| CPU% stand-in | CPU% proxy | CPU% pass-through | CPU% gateway " + ("| CPU% PostgreSQL " if pg else "")
          + "| CPU% wrk | machine % |")
        p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if pg else "") + "---:|---:|")
        for t in TARGETS:
            s = summary(method, conc, t)
            if s is None:
                continue
            c = s["cpu"]
            p(f"| {LABEL[t]} | {_fmt(s['rps'])} | {', '.join(_fmt(x) for x in s['rounds'])} "
              f"| {_fmt(s['p50_ms'], '.2f')} | {_fmt(s['p99_ms'], '.2f')} | {_fmt(s['max_ms'], '.1f')} "
              f"| {s['sock_err']} | {s['non2xx']} "
              f"| {_fmt(c['standin'])} | {_fmt(c['proxy'])} | {_fmt(c['passthrough'])} | {_fmt(c['gateway'])} "
              + (f"| {_fmt(c['postgres'])} " if pg else "")
              + f"| {_fmt(c['wrk'])} | {_fmt(c['machine'])} |")
        d, px, pt, g = (summary(method, conc, t) for t in TARGETS)
        p("")
        if g and px and px["rps"]:
            p(f"- gateway / nginx-proxy req/s: **{g['rps'] / px['rps']:.2f}×**")
        if pt and px and px["rps"]:
            line = f"- pass-through / nginx-proxy req/s: {pt['rps'] / px['rps']:.2f}× (the stack's ceiling)"
            if g and pt["rps"]:
                line += f"; gateway / pass-through: {g['rps'] / pt['rps']:.2f}×"
            p(line)
        served = {t: cpu_us(s, t) for t, s in zip(TARGETS, (d, px, pt, g))}
        if any(served.values()):
            line = "- server CPU per request: " + ", ".join(
                f"{LABEL[t]} {us:.1f} µs" for t, us in served.items() if us)
            if served["gateway"] and served["passthrough"]:
                line += (f"; the gateway's own work (above the pass-through) "
                         f"{served['gateway'] - served['passthrough']:.1f} µs")
            p(line)
        if g and d:
            p(f"- gateway p99 − direct p99: **{g['p99_ms'] - d['p99_ms']:+.2f} ms**")
        if g and px:
            p(f"- stand-in CPU during the gateway runs {_fmt(g['cpu']['standin'])} %, during the proxy runs "
              f"{_fmt(px['cpu']['standin'])} % of its one worker (100 % would make it the bottleneck); "
              f"machine {_fmt(g['cpu']['machine'])} % busy during the gateway runs")
        if g and g["log_bytes_per_req"] is not None:
            p(f"- gateway.log: {g['log_bytes_per_req']:.0f} bytes per request")
        p("")

    hwm_256 = float(meta["vmhwm_kib_after_256"]) / 1024 if meta.get("vmhwm_kib_after_256") else None
    hwm_end = float(meta["vmhwm_kib_end"]) / 1024 if meta.get("vmhwm_kib_end") else None
    hwm_cold = float(meta["vmhwm_kib_cold"]) / 1024 if meta.get("vmhwm_kib_cold") else None
    ready_ms = [r["ready_ms"] for r in ready if r.get("ok")]
    first_ms = [r["first_answer_ms"] for r in ready if r.get("ok")]
    ready_med = _med(ready_ms)
    log_size = int(meta.get("gateway_log_bytes", "0"))
    token_calls = int(meta.get("cold_token_calls", "-1"))

    p("## Gateway process")
    p("")
    p(f"- peak RSS (VmHWM) after the c=256 runs: **{_fmt(hwm_256, '.1f')} MiB**; at the end: "
      f"{_fmt(hwm_end, '.1f')} MiB; the cold-burst instance after its 1,000 POSTs: {_fmt(hwm_cold, '.1f')} MiB")
    parts = [int(x) / 1024 for x in meta.get("rss_parts_kib_after_256", "").split()]
    if len(parts) == 4:
        p(f"- resident after the c=256 runs: the binary's code {parts[0]:.1f} MiB, its other pages "
          f"{parts[1]:.1f} MiB, anonymous memory (heap, stacks) {parts[2]:.1f} MiB, other files "
          f"{parts[3]:.1f} MiB")
    held = meta.get("symbol_order_held_listed", "").split()
    if len(held) == 2:
        p(f"- link order (bench/symbol-order.txt, see build.rs): {held[0]} of its {held[1]} functions are "
          f"in this binary; far fewer means the list is stale: `BENCH_PROFILE=1 BENCH_PROFILE_TOOL=symbols "
          f"bench/run`, then rebuild")
    p(f"- readiness (spawn → first /readyz 200, polled every 2 ms), per start: "
      f"**{', '.join(_fmt(x, '.1f') for x in ready_ms) or 'n/a'} ms** (median {_fmt(ready_med, '.1f')}); "
      f"first HTTP answer at {', '.join(_fmt(x, '.1f') for x in first_ms)} ms")
    p(f"- 1,000 concurrent first POSTs on a fresh gateway: **{token_calls} token-endpoint call(s)**, "
      f"{cold.get('accepted_202', 0)} × 202 (statuses {json.dumps(cold.get('statuses', {}))}, "
      f"{cold.get('connect_errors', '?')} connect errors, all answered in {cold.get('all_answered_ms', '?')} ms)")
    p(f"- gateway.log: {log_size / 1048576:.1f} MiB in all ({log_size} bytes, every start and warm-up "
      f"included); per measured request: "
      + ", ".join(
          f"{m} c={c} {_fmt(summary(m, c, 'gateway')['log_bytes_per_req'], '.0f')} B"
          for m, c in phases
          if summary(m, c, "gateway")
      ))
    p("")

    def check(name, ok, detail):
        status = "n/a " if ok is None else ("PASS" if ok else "MISS")
        p(f"| {status} | {name} | {detail} |")

    p("## Targets")
    p("")
    p("| | target | measured |")
    p("|---|---|---|")
    ceilings = []
    for method in ("POST", "GET"):
        d, px, pt, g = (summary(method, 64, t) for t in TARGETS)
        if pt and px and px["rps"]:
            ceilings.append(f"{method} {pt['rps'] / px['rps']:.2f}×")
        if not (g and px and d):
            continue
        tag = "" if method == "POST" else " (GET listing)"
        ratio = g["rps"] / px["rps"] if px["rps"] else None
        check(f"gateway ≥ 1.0× nginx-proxy req/s at c=64{tag}", ratio is not None and ratio >= 1.0,
              f"{_fmt(ratio, '.2f')}× ({_fmt(g['rps'])} vs {_fmt(px['rps'])} req/s)")
        delta = g["p99_ms"] - d["p99_ms"]
        check(f"gateway p99 ≤ direct p99 + 1 ms at c=64{tag}", delta <= 1.0,
              f"{g['p99_ms']:.2f} ms vs {d['p99_ms']:.2f} ms ({delta:+.2f} ms)")
    check("peak RSS ≤ 32 MiB at c=256", None if hwm_256 is None else hwm_256 <= 32.0,
          f"{_fmt(hwm_256, '.1f')} MiB")
    check("ready ≤ 50 ms", None if ready_med is None else ready_med <= 50.0,
          f"median {_fmt(ready_med, '.1f')} ms of {len(ready_ms)} start(s)")
    check("1 token call for 1,000 cold requests", token_calls == 1,
          f"{token_calls} call(s), {cold.get('accepted_202', 0)}/1000 × 202")
    p("")
    if ceilings:
        p("The stack's ceiling at c=64, actix-web + reqwest passing requests on with none of the gateway's "
          "work, against nginx-proxy: " + ", ".join(ceilings) + ". A req/s ratio above it is out of "
          "this stack's reach whatever the gateway does.")
        p("")
    p(f"Wall time: {meta.get('wall_s', '?')} s (measurement, build excluded: {meta.get('measure_s', '?')} s).")

    text = "\n".join(out) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    sys.stdout.write(text)


# ----------------------------------------------------------------------------- faultmap
def read_maps(path):
    """A copy of /proc/PID/maps as sorted (start, end, permissions, file offset, name). A
    mapping's name is its file, or the kernel's label ([heap], [stack]); anonymous mappings
    (the allocator's arenas, thread stacks) have none: "[anonymous]"."""
    maps = []
    with open(path) as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            name = parts[5].strip() if len(parts) > 5 else "[anonymous]"
            maps.append((lo, hi, parts[1], int(parts[2], 16), name))
    return sorted(maps)


def cmd_faultmap(args):
    maps = [(lo, hi, f"{name} ({perms})") for lo, hi, perms, _, name in read_maps(args.maps)]
    starts = [m[0] for m in maps]
    counts, total = {}, 0
    for line in sys.stdin:
        word = line.strip()
        if not word:
            continue
        try:
            addr = int(word, 16)
        except ValueError:
            continue
        total += 1
        i = bisect.bisect_right(starts, addr) - 1
        key = maps[i][2] if i >= 0 and addr < maps[i][1] else "[not mapped at the end]"
        counts[key] = counts.get(key, 0) + 1
    print(f"# {total} page faults ({total * 4 / 1024:.1f} MiB at one 4 KiB page each), by mapping")
    for key, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{n:8d} {100 * n / max(total, 1):6.1f} %  {key}")


# ---------------------------------------------------------------------------- symbols
def executed_symbols(callgrind_path, object_suffix):
    """Every function of the object that ran (self cost or called), with its self cost in Ir.

    Callgrind's format compresses names: `fn=(12) name` the first time, `fn=(12)` after;
    `ob=`/`cob=` name the object of a function and of a callee; a cost line after `calls=`
    is the call's inclusive cost, not the caller's own."""
    objects, names, cost = {}, {}, {}
    current_object = current_fn = callee_object = None
    after_calls = False

    def lookup(table, rest):
        ident, _, name = rest.partition(" ")
        if name:
            table[ident] = name
        return table[ident]

    with open(callgrind_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            key, eq, rest = line.partition("=")
            if eq and key in ("ob", "cob", "fn", "cfn"):
                if key == "ob":
                    current_object = lookup(objects, rest)
                elif key == "cob":
                    callee_object = lookup(objects, rest)
                elif key == "fn":
                    current_fn = (current_object, lookup(names, rest))
                    cost.setdefault(current_fn, 0)
                    callee_object = None
                else:
                    cost.setdefault((callee_object or current_object, lookup(names, rest)), 0)
                    callee_object = None
                continue
            if eq and key == "calls":
                after_calls = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                if after_calls:
                    after_calls = False
                elif current_fn is not None:
                    fields = line.split()
                    if len(fields) >= 2:
                        cost[current_fn] += int(fields[1])
    return {name: c for (obj, name), c in cost.items() if obj and obj.endswith(object_suffix)}


def functions_seen(faults_path, maps_path, binary, functions):
    """The functions of `binary` (sorted (address, size, name)) holding the code addresses of
    `faults_path` (perf script -F addr of page faults, -F ip of samples), in first-seen
    order; `maps_path` is a copy of the process's /proc/PID/maps, which places the binary's
    executable mapping."""
    text = next(((lo, hi, offset) for lo, hi, perms, offset, name in read_maps(maps_path)
                 if name == os.path.abspath(binary) and "x" in perms), None)
    if text is None:
        raise SystemExit(f"{maps_path} has no executable mapping of {binary}")
    # File offset -> address in the ELF: the executable segment's p_offset and p_vaddr.
    headers = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    segment = next((line.split() for line in headers.splitlines()
                    if line.split()[:1] == ["LOAD"] and "E" in line.split()[-2]), None)
    if segment is None:
        raise SystemExit(f"{binary} has no executable LOAD segment (readelf -lW)")
    p_offset, p_vaddr = int(segment[1], 16), int(segment[2], 16)
    starts = [f[0] for f in functions]
    seen, order = set(), []
    with open(faults_path) as f:
        for line in f:
            try:
                addr = int(line.strip(), 16)
            except ValueError:
                continue
            if not text[0] <= addr < text[1]:
                continue
            elf_addr = addr - text[0] + text[2] - p_offset + p_vaddr
            i = bisect.bisect_right(starts, elf_addr) - 1
            if i >= 0 and elf_addr < functions[i][0] + max(functions[i][1], 1):
                name = functions[i][2]
                if name not in seen:
                    seen.add(name)
                    order.append(name)
    return order


# ----------------------------------------------------------------------------- instructions
# Where a request's user-space instructions go, by library: the first pattern a function's
# name matches. Inlining (fat LTO) puts a callee's instructions in its caller, so the groups
# are approximate at their edges; the functions below them are exact.
INSTRUCTION_GROUPS = [
    ("SQLite", r"^(sqlite3|wal|pager|btree|vdbe|pcache|unix|balance|fillInCell|insertCell|"
               r"getAndInitPage|moveToChild|releasePage|dropCell|allocateSpace|defragmentPage)"
               r"|rusqlite|libsqlite3"),
    ("TLS/crypto (aws-lc: callgrind's CPU has no SHA-NI)", r"aws_lc|sha256|rustls"),
    ("tracing (spans, log lines)", r"tracing_subscriber|tracing_core|tracing::|sharded_slab|thread_local|"
                                   r"tracing_actix_web|telemetry::|opentelemetry|Instrumented|tracing_appender"),
    ("actix-web / actix-http", r"actix"),
    ("reqwest / hyper / tower", r"reqwest|hyper|tower|h2::|http_body"),
    ("http (headers) / httparse", r"\bhttp::|httparse"),
    ("url", r"\burl::|idna"),
    ("routing regexes", r"regex"),
    ("allocator (jemalloc)", r"malloc|sdallocx|rallocx|_rjem|\bfree\b|realloc|calloc|jemalloc"),
    ("memset (rep stosb: one instruction a byte here)", r"memset"),
    ("memcpy / memcmp / memchr", r"mem(move|cpy|cmp|chr|rchr)|strlen"),
    ("tokio / mio", r"tokio|mio::"),
    ("formatting (core::fmt)", r"core::fmt|alloc::fmt|as core::fmt::|LowerHex|pad_integral"),
    ("hashing", r"hash|Hasher|sip"),
    ("serde / JSON", r"serde"),
    ("metrics (prometheus-client)", r"prometheus|metrics::"),
    ("moka (caches)", r"moka"),
    ("bytes / futures", r"bytes::|futures"),
    ("partner-gateway's own functions", r"partner_gateway"),
    ("other C code (SQLite's static functions, glibc: pthread, syscall wrappers)",
     r"^[A-Za-z_][A-Za-z0-9_]*(@@GLIBC[0-9_.]+)?(\.(part|isra|constprop)\.[0-9]+)*$"),
]


def cmd_instructions(args):
    """Instructions per request from a callgrind profile, by group and by function."""
    requests = next(json.loads(line.split(" ", 1)[1]) for line in open(args.wrk)
                    if line.startswith("BENCH_JSON "))["requests"]
    annotate = subprocess.run(["callgrind_annotate", "--threshold=100", args.callgrind],
                              capture_output=True, text=True, check=True).stdout
    line_re = re.compile(r"\s*([0-9,]+) \(\s*[0-9.]+%\)\s+(?:\S*?:)?(.*?)(?: \[[^]]*\])?$")
    total, functions = 0, []
    for line in annotate.splitlines():
        m = line_re.match(line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            total = ir
            continue
        functions.append((ir, m.group(2)))
    n = max(requests, 1)
    groups = {name: 0 for name, _ in INSTRUCTION_GROUPS}
    other = 0
    compiled = [(name, re.compile(pattern)) for name, pattern in INSTRUCTION_GROUPS]
    for ir, name in functions:
        for group, pattern in compiled:
            if pattern.search(name):
                groups[group] += ir
                break
        else:
            other += ir
    out = [f"# User-space instructions per request ({args.label}), callgrind", "",
           f"{total:,} instructions for {requests:,} requests: **{total / n:,.0f} per request**", "",
           "| instructions per request | where (first match of the function's name) |", "|---:|---|"]
    for group, ir in sorted(groups.items(), key=lambda kv: -kv[1]):
        out.append(f"| {ir / n:,.0f} | {group} |")
    out.append(f"| {other / n:,.0f} | everything else |")
    out += ["", "Costliest functions (their own instructions, per request):", ""]
    for ir, name in sorted(functions, reverse=True)[:40]:
        out.append(f"{ir / n:10,.0f}  {name[:160]}")
    text = "\n".join(out) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    sys.stdout.write(text)


def cmd_symbols(args):
    executed = executed_symbols(args.callgrind, "/" + os.path.basename(args.binary))
    # Only names the binary has (callgrind also names code it found no symbol for).
    nm = subprocess.run(["nm", "-S", "--defined-only", args.binary], capture_output=True,
                        text=True, check=True, timeout=120)
    in_binary, functions = set(), []
    for line in nm.stdout.splitlines():
        fields = line.split()
        if not fields:
            continue
        in_binary.add(fields[-1])
        if len(fields) == 4 and fields[2] in "tTwW":
            functions.append((int(fields[0], 16), int(fields[1], 16), fields[3]))
    functions.sort()
    ordered = sorted((n for n in executed if n in in_binary), key=lambda n: (-executed[n], n))
    seen_natively = []
    if args.faults:
        listed = set(ordered)
        seen = functions_seen(args.faults, args.maps, args.binary, functions)
        seen_natively = [n for n in seen if n not in listed]
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("".join(n + "\n" for n in ordered + seen_natively))
    print(json.dumps({"executed": len(executed), "written": len(ordered) + len(seen_natively),
                      "from_native_run": len(seen_natively), "out": args.out}))


# ----------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ports")
    s.add_argument("n", type=int)
    s.set_defaults(func=cmd_ports)

    s = sub.add_parser("mint")
    s.add_argument("dir")
    s.set_defaults(func=cmd_mint)

    s = sub.add_parser("spawn")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--errlog", required=True)
    s.add_argument("--pidfile", required=True)
    s.add_argument("--ready-out", required=True)
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_spawn)

    s = sub.add_parser("cold")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--path", required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--timeout", type=float, default=60.0)
    s.set_defaults(func=cmd_cold)

    s = sub.add_parser("report")
    s.add_argument("--results", required=True)
    s.add_argument("--meta", required=True)
    s.add_argument("--ready", required=True)
    s.add_argument("--cold", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("faultmap")
    s.add_argument("maps")
    s.set_defaults(func=cmd_faultmap)

    s = sub.add_parser("instructions")
    s.add_argument("--callgrind", required=True)
    s.add_argument("--wrk", required=True, help="wrk's output for the load counted (its BENCH_JSON line)")
    s.add_argument("--label", default="", help="the load, for the heading")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_instructions)

    s = sub.add_parser("symbols")
    s.add_argument("--callgrind", required=True)
    s.add_argument("--binary", required=True)
    s.add_argument("--faults", help="code addresses seen under the loads run natively: perf "
                   "script -F addr of page faults, -F ip of CPU samples")
    s.add_argument("--maps", help="/proc/PID/maps of that process (with --faults)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_symbols)

    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
