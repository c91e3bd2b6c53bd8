#!/usr/bin/env python3
"""Scale-out on one machine: a real Redis, two lmhost replicas and a real nginx
in front of them (the site written by `lmhost deploy generate --target nginx`),
all on loopback ports with private folders (no system service is touched).

usage: scale_test.py LMHOST_BINARY     (make test-scale; ctest -R scale_out)

Shows:
  1. both replicas answer behind nginx (two instance ids);
  2. an embedding computed through one replica is a Redis cache hit through the other;
  3. a key's rate limit holds globally: what one replica admitted, the other refuses (429);
  4. one replica killed (SIGKILL) under a steady load loop of idempotent and
     retry-safe requests costs no failed request (nginx retries on the other);
  5. the survivor's metrics show it took the traffic;
  6. a replica stopped with SIGTERM under a load loop that includes chat
     completions (not retried by nginx) costs no failed request either: the
     listener closes at once, requests in flight finish (drain).
Exit 77 (skipped) when redis-server or nginx is missing.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

BIN = os.path.realpath(sys.argv[1])
for tool in ("redis-server", "nginx"):
    if not shutil.which(tool):
        print(f"SKIP: {tool} is not installed (scripts/install-test-deps.sh installs it)")
        sys.exit(77)

TMP = tempfile.mkdtemp(prefix="lmhost-scale-")
procs = []
failures = []
LOAD_KEY = "load-key-7f3a9c1e5b2d4f60"
LIMITED_KEY = "limited-key-2b8e6d4a1c9f3e75"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def check(cond, what):
    log(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, key=LOAD_KEY, timeout=30):
    """(status, headers, body bytes); status 0 on a connection error."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except Exception as e:  # refused, reset, timeout
        return 0, {}, str(e).encode()


def wait_for(url, what, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        st, _, _ = http("GET", url, key=None, timeout=2)
        if st == 200:
            return
        time.sleep(0.1)
    raise SystemExit(f"FAIL: {what} not ready after {timeout}s ({url})")


def metric_sum(base, name, label_filter=None):
    st, _, text = http("GET", base + "/metrics", key=None)
    if st != 200:
        return None
    total = 0.0
    for line in text.decode().splitlines():
        m = re.match(r"^(\w+)(\{[^}]*\})?\s+(\S+)$", line)
        if m and m.group(1) == name and (label_filter is None or re.search(label_filter, m.group(2) or "")):
            total += float(m.group(3))
    return total


# ---- Redis ----
redis_port = free_port()
procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", TMP], stdout=subprocess.DEVNULL))
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", redis_port), timeout=0.2).close()
        break
    except OSError:
        time.sleep(0.05)
REDIS_URL = f"redis://127.0.0.1:{redis_port}"

# ---- two replicas ----
config = os.path.join(TMP, "lmhost.yaml")
with open(config, "w") as f:
    f.write(f"""auth:
  keys:
    - name: load
      key: {LOAD_KEY}
    - name: limited
      key: {LIMITED_KEY}
      requests_per_minute: 6
      burst: 3
""")
ports = [free_port(), free_port()]
replicas = [None, None]


def start_replica(i):
    env = dict(os.environ, REDIS_URL=REDIS_URL, INSTANCE_ID=f"replica-{i + 1}", LOG_REQUESTS="false")
    logf = open(os.path.join(TMP, f"replica-{i + 1}.log"), "a")
    p = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", str(ports[i]), "--config", config, "-q"],
                         env=env, stdout=logf, stderr=logf)
    replicas[i] = p
    procs.append(p)
    wait_for(f"http://127.0.0.1:{ports[i]}/health", f"replica {i + 1}")


for i in range(2):
    start_replica(i)
bases = [f"http://127.0.0.1:{p}" for p in ports]
log("redis", REDIS_URL, "replicas", bases)

# ---- nginx in front, with the site lmhost generates ----
nginx_port = free_port()
site_dir = os.path.join(TMP, "site")
r = subprocess.run([BIN, "deploy", "generate", "--target", "nginx", "-q", "-o", site_dir, "--server-name", "localhost",
                    "--listen", f"127.0.0.1:{nginx_port}", "--upstream", f"127.0.0.1:{ports[0]}",
                    "--upstream", f"127.0.0.1:{ports[1]}"], capture_output=True, text=True)
if r.returncode != 0:
    raise SystemExit("FAIL: lmhost deploy generate: " + r.stderr)
prefix = os.path.join(TMP, "nginx")
os.makedirs(os.path.join(prefix, "logs"))
with open(os.path.join(prefix, "nginx.conf"), "w") as f:
    f.write(f"""daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site_dir}/nginx/lmhost.conf;
}}
""")
nginx = subprocess.Popen(["nginx", "-p", prefix, "-c", os.path.join(prefix, "nginx.conf"),
                          "-e", os.path.join(prefix, "logs/error.log")])
procs.append(nginx)
LB = f"http://127.0.0.1:{nginx_port}"
wait_for(LB + "/health", "nginx", timeout=20)


def run_load(seconds, workers, with_chat, event_at=None, event=None):
    """Steady, bounded load through nginx; returns (results, time of the event)."""
    results = []  # (t, route, status)
    lock = threading.Lock()
    stop = time.time() + seconds
    t_event = [None]

    def worker(w):
        i = 0
        while time.time() < stop:
            i += 1
            kind = i % 3
            if kind == 0:
                route, st = "/v1/models", http("GET", LB + "/v1/models")[0]
            elif kind == 1 or not with_chat:
                route = "/v1/embeddings"
                st = http("POST", LB + "/v1/embeddings", {"input": f"load text {w} {i % 40}"})[0]
            else:
                route = "/v1/chat/completions"
                st = http("POST", LB + "/v1/chat/completions",
                          {"messages": [{"role": "user", "content": f"hello {i}"}], "max_tokens": 12})[0]
            with lock:
                results.append((time.time(), route, st))
            time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    if event:
        time.sleep(event_at)
        t_event[0] = time.time()
        event()
    for t in threads:
        t.join()
    return results, t_event[0]


ok = True
try:
    # 1. Both replicas behind nginx.
    seen = set()
    for _ in range(8):
        st, _, body = http("GET", LB + "/info")
        if st == 200:
            seen.add(json.loads(body)["instance_id"])
    check(seen == {"replica-1", "replica-2"}, f"nginx spreads requests over both replicas (saw {sorted(seen)})")

    # 2. Embedding cache shared through Redis.
    text = f"shared cache probe {os.getpid()} {time.time()}"
    before = json.loads(http("GET", bases[1] + "/api/v1/cache")[2])["redis"]["hits"]
    s1, _, e1 = http("POST", bases[0] + "/v1/embeddings", {"input": text})
    s2, _, e2 = http("POST", bases[1] + "/v1/embeddings", {"input": text})
    after = json.loads(http("GET", bases[1] + "/api/v1/cache")[2])["redis"]["hits"]
    check(s1 == 200 and s2 == 200, "embedding through replica 1, then the same text through replica 2")
    check(after == before + 1, f"replica 2 answered from Redis (redis hits {before} -> {after})")
    check(json.loads(e1)["data"][0]["embedding"] == json.loads(e2)["data"][0]["embedding"],
          "the cached embedding equals the computed one")

    # 3. A key's rate limit is global.
    def admitted(base, n=8):
        got, hdr = 0, {}
        for _ in range(n):
            st, h, _ = http("GET", base + "/v1/models", key=LIMITED_KEY)
            if st == 200:
                got += 1
            elif st == 429:
                hdr = h
            else:
                return got, {"unexpected": st}
        return got, hdr
    a1, h1 = admitted(bases[0], 16)
    a2, h2 = admitted(bases[1])
    a_lb, _ = admitted(LB, 4)
    log(f"limited key (6/min, burst 3): replica 1 admitted {a1}/16, then replica 2 {a2}/8, nginx {a_lb}/4; "
        "429 headers: " + ", ".join(f"{k}={v}" for k, v in h1.items() if k.lower().startswith(("retry", "x-ratelimit"))))
    check(3 <= a1 < 16, "replica 1 admits the key's allowance, then answers 429")
    check(a2 <= 1 and a_lb <= 1, "replica 2 (and nginx) refuse the same key: the limit is shared through Redis")
    check(any(k.lower() == "retry-after" for k in h1), "429 carries Retry-After")

    # 4. SIGKILL replica 1 under load: no failed request.
    r2_routes = r'route="/v1/(models|embeddings)"'
    m_before = metric_sum(bases[1], "lmhost_http_requests_total", r2_routes)
    results, t_kill = run_load(6.0, 4, False, 2.0, lambda: replicas[0].send_signal(signal.SIGKILL))
    bad = [r for r in results if r[2] != 200]
    after_kill = [r for r in results if r[0] > t_kill + 0.5]
    log(f"load with SIGKILL: {len(results)} requests, {len(bad)} failed, {len(after_kill)} after the kill")
    check(len(results) > 50 and not bad, f"no failed request while replica 1 was killed (failures: {bad[:5]})")
    m_after = metric_sum(bases[1], "lmhost_http_requests_total", r2_routes)
    if m_before is None or m_after is None:
        log("SKIP the survivor's metrics: /metrics is not served by this build")
    else:
        log(f"survivor's lmhost_http_requests_total (models+embeddings): {m_before:.0f} -> {m_after:.0f}")
        check(m_after - m_before >= len(after_kill), "the survivor's metrics count every request after the kill")
    replicas[0].wait()

    # 5. Replica 1 back; SIGTERM replica 2 under load with chat completions: no failed request.
    start_replica(0)
    wait_for(bases[0] + "/ready", "replica 1 ready")
    # nginx marked replica 1 failed (max_fails / fail_timeout of the site): wait
    # until it sends traffic there again before stopping replica 2.
    t0 = time.time()
    while time.time() - t0 < 30:
        st, _, body = http("GET", LB + "/info")
        if st == 200 and json.loads(body)["instance_id"] == "replica-1":
            break
        time.sleep(0.2)
    check(time.time() - t0 < 30, f"nginx sends traffic to the restarted replica 1 again ({time.time() - t0:.1f} s)")
    results, t_term = run_load(6.0, 4, True, 2.0, lambda: replicas[1].send_signal(signal.SIGTERM))
    bad = [r for r in results if r[2] != 200]
    chats = [r for r in results if r[1] == "/v1/chat/completions"]
    log(f"load with SIGTERM: {len(results)} requests ({len(chats)} chat), {len(bad)} failed")
    check(len(chats) > 10 and not bad, f"no failed request while replica 2 drained and stopped (failures: {bad[:5]})")
    code = replicas[1].wait(timeout=60)
    check(code == 0, f"replica 2 exited 0 after SIGTERM (got {code})")
finally:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
    if failures:
        for f in sorted(os.listdir(TMP)):
            if f.endswith(".log"):
                print(f"---- {f} (tail)\n" + open(os.path.join(TMP, f), errors="replace").read()[-2000:])
        err = os.path.join(prefix, "logs/error.log") if os.path.isdir(prefix) else None
        if err and os.path.exists(err):
            print("---- nginx error.log (tail)\n" + open(err).read()[-2000:])
    shutil.rmtree(TMP, ignore_errors=True)

print(f"scale-out: {len(failures)} failed" + ("" if not failures else ": " + "; ".join(failures)))
sys.exit(1 if failures else 0)
