#!/usr/bin/env python3
"""Validates the deployment files with the real tools that exist on Debian 12.

usage: validate_deploy.py LMHOST_BINARY SOURCE_DIR

- deploy/ in the source tree is exactly `lmhost deploy generate --target all`
  with the defaults (no drift between templates and committed files);
- promtool check config / check rules / test rules (Debian's prometheus);
- nginx -t on generated sites, with a private prefix and config (no system
  nginx is touched, nothing listens);
- `docker compose config` when the compose plugin is present (skipped with a
  message otherwise: Docker cannot run on these machines);
- YAML well-formedness (python3-yaml) and the fields each Kubernetes
  manifest, the compose file and the dashboard must have.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

BIN, SRC = sys.argv[1], sys.argv[2]
TMP = tempfile.mkdtemp(prefix="lmhost-deploy-test-")
failures = []
skips = []
passes = 0


def check(cond, what):
    global passes
    if cond:
        passes += 1
    else:
        failures.append(what)
        print("FAIL:", what)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def generate(out, *args, env=None):
    r = run([BIN, "deploy", "generate", "-q", "-o", out, *args], env=env if env is not None else {})
    check(r.returncode == 0, f"deploy generate {' '.join(args)}: {r.stderr.strip()}")
    return out


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# 1. deploy/ == generator output with the defaults (empty environment).
default = generate(os.path.join(TMP, "default"), "--target", "all")
r = run(["diff", "-r", "-x", "README.md", os.path.join(SRC, "deploy"), default])
check(r.returncode == 0, "deploy/ differs from `lmhost deploy generate --target all` (regenerate it: "
      "env -i build/lmhost deploy generate --target all -o deploy --force)\n" + r.stdout[:3000])

# A customised generation, as an operator would run it.
custom_env = {"PORT": "9100", "REDIS_URL": "redis://cache.internal:6379/1", "RATE_LIMIT_REQUESTS_PER_MINUTE": "120",
              "API_KEYS": "secret-that-must-not-leak"}
custom = generate(os.path.join(TMP, "custom"), "--target", "systemd,nginx,compose,k8s", "--replicas", "3",
                  "--model", "qwen=/srv/models/qwen2.5-0.5b-q8_0.gguf", "--server-name", "llm.example.test",
                  "--listen", "127.0.0.1:18099", "--namespace", "llm", "--image", "registry.local/lmhost:1.2.3",
                  "--env", "CACHE_SIZE=5000", env=custom_env)
for root, _, files in os.walk(custom):
    for f in files:
        check("secret-that-must-not-leak" not in open(os.path.join(root, f)).read(), f"secret leaked into {f}")
        check("{{" not in open(os.path.join(root, f)).read().replace("{{ $", "").replace("{{instance}}", "")
              .replace("{{model}}", "").replace("{{status}}", "").replace("{{route}}", "").replace("{{cache}}", ""),
              f"unfilled placeholder in {f}")
site = open(os.path.join(custom, "nginx/lmhost.conf")).read()
for port in (9100, 9101, 9102):
    check(f"server 127.0.0.1:{port} " in site, f"nginx upstream lists replica {port}")
check("server_name llm.example.test;" in site, "nginx server_name")
check("proxy_buffering off;" in site, "nginx streaming unbuffered")
check("proxy_read_timeout 630s;" in site, "nginx read timeout follows REQUEST_TIMEOUT_SECONDS")
unit = open(os.path.join(custom, "systemd/lmhost@.service")).read()
check("--model qwen=/srv/models/qwen2.5-0.5b-q8_0.gguf" in unit, "systemd ExecStart has the model")
check("lmhost@9100 lmhost@9101 lmhost@9102" in unit, "systemd instances listed")
envf = open(os.path.join(custom, "systemd/lmhost.env")).read()
for line in ("REDIS_URL=redis://cache.internal:6379/1", "RATE_LIMIT_REQUESTS_PER_MINUTE=120", "CACHE_SIZE=5000",
             "DEFAULT_MODEL=qwen"):
    check(line in envf.splitlines(), f"systemd env has {line}")
r = run([BIN, "deploy", "generate", "--target", "nginx", "-o", custom, "--replicas", "5"])
check(r.returncode != 0 and "--force" in r.stderr, "refuses to overwrite a changed file without --force")
r = run([BIN, "deploy", "generate", "--target", "helm", "-o", os.path.join(TMP, "x")])
check(r.returncode != 0 and "unknown --target" in r.stderr, "unknown target is a clear error")

# 2. promtool.
if shutil.which("promtool"):
    for d in (default, custom) if os.path.exists(os.path.join(custom, "monitoring")) else (default,):
        r = run(["promtool", "check", "config", os.path.join(d, "monitoring/prometheus.yml")])
        check(r.returncode == 0, "promtool check config: " + r.stdout + r.stderr)
    r = run(["promtool", "check", "rules", os.path.join(default, "monitoring/alerts.yml")])
    check(r.returncode == 0, "promtool check rules: " + r.stdout + r.stderr)
    shutil.copy(os.path.join(SRC, "tests/deploy/alerts_test.yml"), os.path.join(default, "monitoring"))
    r = run(["promtool", "test", "rules", "alerts_test.yml"], cwd=os.path.join(default, "monitoring"))
    check(r.returncode == 0, "promtool test rules: " + r.stdout + r.stderr)
else:
    skips.append("promtool not installed (Debian package prometheus): Prometheus files not checked")

# 3. nginx -t on the generated sites, in a private prefix.
if shutil.which("nginx"):
    for d in (default, custom):
        prefix = os.path.join(d, "nginx-prefix")
        os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {d}/nginx/lmhost.conf;
}}
""")
        r = run(["nginx", "-t", "-p", prefix, "-c", conf, "-e", os.path.join(prefix, "logs/error.log")])
        check(r.returncode == 0, f"nginx -t ({os.path.basename(d)}): " + r.stderr)
else:
    skips.append("nginx not installed: the nginx site was not checked with nginx -t")

# 4. docker compose config (only where the compose plugin exists).
compose_ok = shutil.which("docker") and run(["docker", "compose", "version"]).returncode == 0
if compose_ok:
    for d in (default, custom):
        r = run(["docker", "compose", "-f", os.path.join(d, "compose/docker-compose.yml"), "config", "-q"])
        check(r.returncode == 0, "docker compose config: " + r.stderr)
else:
    skips.append("docker compose plugin not available here: `docker compose config` not run "
                 "(the compose file is still checked as YAML below)")

# 5. YAML and required fields.
for d, ns, replicas, port in ((default, "lmhost", 2, 8080), (custom, "llm", 3, 9100)):
    k8s = os.path.join(d, "k8s")
    kust = load_all(os.path.join(k8s, "kustomization.yaml"))[0]
    check(kust["namespace"] == ns, "kustomization namespace")
    docs = []
    for res in kust["resources"]:
        check(os.path.exists(os.path.join(k8s, res)), f"kustomization resource {res} exists")
        docs += load_all(os.path.join(k8s, res))
    names = {f for f in os.listdir(k8s) if f.endswith(".yaml")} - {"kustomization.yaml"}
    check(names == set(kust["resources"]), "every manifest is listed in kustomization.yaml")
    kinds = {}
    for doc in docs:
        check(isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str), "apiVersion and kind")
        check(doc.get("metadata", {}).get("name"), f"{doc.get('kind')} has a name")
        if doc["kind"] != "Namespace":
            check(doc["metadata"].get("namespace") == ns, f"{doc['kind']} {doc['metadata']['name']} in namespace {ns}")
        kinds.setdefault(doc["kind"], []).append(doc)
    for kind in ("Namespace", "ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
                 "PodDisruptionBudget", "PersistentVolumeClaim"):
        check(kind in kinds, f"a {kind} manifest")
    dep = next(x for x in kinds["Deployment"] if x["metadata"]["name"] == "lmhost")
    check(dep["spec"]["replicas"] == replicas, "Deployment replicas")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in dep["spec"]["selector"]["matchLabels"].items()), "selector matches pods")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    check(c["livenessProbe"]["httpGet"]["path"] == "/health", "liveness probe on /health")
    check(c["readinessProbe"]["httpGet"]["path"] == "/ready", "readiness probe on /ready")
    check(c["ports"][0]["containerPort"] == port, "container port")
    check("cpu" in c["resources"]["requests"] and "memory" in c["resources"]["limits"], "resources")
    check(any(m["mountPath"] == "/models" for m in c["volumeMounts"]), "models mounted")
    check(any(v.get("persistentVolumeClaim", {}).get("claimName") == "lmhost-models"
              for v in dep["spec"]["template"]["spec"]["volumes"]), "models from the PVC")
    check({"configMapRef": {"name": "lmhost-config"}} in c["envFrom"]
          and {"secretRef": {"name": "lmhost-secrets"}} in c["envFrom"], "env from ConfigMap and Secret")
    svc = next(x for x in kinds["Service"] if x["metadata"]["name"] == "lmhost")
    check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selects the pods")
    hpa = kinds["HorizontalPodAutoscaler"][0]
    check(hpa["spec"]["scaleTargetRef"]["name"] == "lmhost" and hpa["spec"]["minReplicas"] == replicas
          and hpa["spec"]["maxReplicas"] >= replicas, "HPA targets the Deployment")
    check("API_KEYS" in kinds["Secret"][0]["stringData"], "Secret holds API_KEYS")
    cm = kinds["ConfigMap"][0]["data"]
    check(all(isinstance(v, str) for v in cm.values()), "ConfigMap values are strings")
    check(cm["REDIS_URL"].startswith("redis://"), "ConfigMap has REDIS_URL")
    check(any(x["metadata"]["name"] == "redis" for x in kinds["Deployment"]), "Redis Deployment")

    comp = load_all(os.path.join(d, "compose/docker-compose.yml"))[0]
    svcs = comp["services"]
    for s in ("lmhost", "redis", "prometheus", "grafana", "ollama"):
        check(s in svcs, f"compose service {s}")
    check("--appendonly" in svcs["redis"]["command"], "Redis append-only")
    check(svcs["ollama"].get("profiles") == ["ollama"], "Ollama only in its profile")
    check(not any("deploy" in v and "resources" in v["deploy"] for v in svcs.values()), "no GPU reservation")
    check(svcs["lmhost"]["environment"]["REDIS_URL"].startswith("redis://"), "compose REDIS_URL")
    check(str(port) in svcs["lmhost"]["ports"][0], "compose port")

    dash = json.load(open(os.path.join(d, "monitoring/grafana/dashboards/lmhost.json"))) \
        if os.path.exists(os.path.join(d, "monitoring")) else None
    if dash:
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        check(len(exprs) >= 15 and all("lmhost_" in e or "up{" in e for e in exprs), "dashboard queries lmhost metrics")
        ids = [p["id"] for p in dash["panels"]]
        check(len(ids) == len(set(ids)), "dashboard panel ids unique")
    for f in ("monitoring/grafana/provisioning/datasources/prometheus.yml",
              "monitoring/grafana/provisioning/dashboards/lmhost.yml"):
        if os.path.exists(os.path.join(d, f)):
            check(load_all(os.path.join(d, f))[0]["apiVersion"] == 1, f"{f} is Grafana provisioning")

# 6. Every lmhost_ metric the alerts and the dashboard query is one the server
# defines (names found as string literals in src/).
import re
defined = set()
for root, _, files in os.walk(os.path.join(SRC, "src")):
    for f in files:
        if f.endswith((".cpp", ".h")):
            defined |= set(re.findall(r'"(lmhost_[a-z0-9_]+)"', open(os.path.join(root, f), errors="replace").read()))
queried = set(re.findall(r"lmhost_[a-z0-9_]+", open(os.path.join(default, "monitoring/alerts.yml")).read()
                         + open(os.path.join(default, "monitoring/grafana/dashboards/lmhost.json")).read()))
queried = {re.sub(r"_(bucket|sum|count)$", "", q) for q in queried} - {"lmhost_backend"}
if "lmhost_http_requests_total" in defined:
    for q in sorted(queried):
        check(q in defined, f"metric {q} (alerts / dashboard) is defined by the server")
else:
    skips.append("this build defines no request metrics yet: metric names of alerts/dashboard not cross-checked")

# 7. docs/configuration.md names every setting the binary knows.
r = run([BIN, "config", "keys"])
if r.returncode == 0:
    conf_doc = open(os.path.join(SRC, "docs/configuration.md")).read()
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            check(f"`{parts[0]}`" in conf_doc and f"`{parts[1]}`" in conf_doc,
                  f"docs/configuration.md documents {parts[0]} / {parts[1]}")
else:
    skips.append("this build has no `lmhost config keys`: docs/configuration.md not cross-checked")

dockerfile = open(os.path.join(default, "docker/Dockerfile")).read()
for needle in ("FROM debian:12 AS build", "scripts/install-deps.sh", "FROM debian:12-slim AS runtime", "USER 10001",
               "HEALTHCHECK", "/health", 'VOLUME ["/models"]'):
    check(needle in dockerfile, f"Dockerfile has {needle}")

for s in skips:
    print("SKIP:", s)
print(f"deploy validation: {passes} checks passed, {len(failures)} failed")
shutil.rmtree(TMP, ignore_errors=True)
sys.exit(1 if failures else 0)
