"""Checks of deploy/ that schemas cannot make; run by .ci/deploy-check inside its venv.

  policy RENDERED.yaml NAME       the rendered overlay keeps the deployment rules (below)
  secret-template FILE            the Secret template names the two keys and holds no value
  context                         what `docker build -f deploy/Dockerfile .` would send
  config RENDERED.yaml BINARY     the gateway's own `check-config` accepts the pod's settings

Each prints one line per finding and exits 1 when there is any.
"""

import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEYS = {
    "PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_SECRET",
    "PARTNER_GATEWAY__PARTNER_TOKEN__REFRESH_TOKEN",
    "PARTNER_GATEWAY__STORE__URL",
}
SECRET_NAME = "partner-gateway-credentials"
# The image's ENV (deploy/Dockerfile), under whatever the ConfigMap sets.
IMAGE_ENV = {
    "PARTNER_GATEWAY__SERVER__LISTEN": "0.0.0.0:8080",
    "PARTNER_GATEWAY__METRICS__LISTEN": "0.0.0.0:9090",
}
# The gateway's built-in defaults for the shutdown settings.
DEFAULT_DELAY_MS, DEFAULT_TIMEOUT_MS = 5000, 20000


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def pod_env(docs, deployment):
    """The PARTNER_GATEWAY__* variables the pod gets: image ENV, then the ConfigMaps."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env = dict(IMAGE_ENV)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps.get(source["configMapRef"]["name"], {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def policy(path, name):
    docs = load(path)
    problems = []

    def need(ok, what):
        if not ok:
            problems.append(f"{name}: {what}")

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deployments = by_kind.get("Deployment", [])
    need(len(deployments) == 1, f"expected one Deployment, found {len(deployments)}")
    if not deployments:
        return problems
    dep = deployments[0]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    selector = spec["selector"]["matchLabels"]
    need(all(labels.get(k) == v for k, v in selector.items()), "selector does not match the pod labels")
    env = pod_env(docs, dep)
    maps = {d["metadata"]["name"] for d in by_kind.get("ConfigMap", [])}
    sandbox = env.get("PARTNER_GATEWAY__MODE", "sandbox") == "sandbox"

    rolling = spec.get("strategy", {}).get("rollingUpdate", {})
    need(rolling.get("maxUnavailable") == 0 and rolling.get("maxSurge") == 1,
         "rollingUpdate must be maxUnavailable 0, maxSurge 1")
    need(pod.get("automountServiceAccountToken") is False, "automountServiceAccountToken must be false")
    psc = pod.get("securityContext", {})
    need(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532, "pod must run as non-root 65532")
    need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccompProfile must be RuntimeDefault")
    keys = {c.get("topologyKey") for c in pod.get("topologySpreadConstraints", [])}
    need({"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys, "spread over zones and nodes")

    # Shutdown: the gateway's delay + timeout must end before the kubelet's SIGKILL.
    delay = int(env.get("PARTNER_GATEWAY__SERVER__SHUTDOWN_DELAY_MS", DEFAULT_DELAY_MS))
    timeout = int(env.get("PARTNER_GATEWAY__SERVER__SHUTDOWN_TIMEOUT_MS", DEFAULT_TIMEOUT_MS))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    need(grace * 1000 > delay + timeout,
         f"terminationGracePeriodSeconds {grace} s is not above shutdown delay + timeout ({delay + timeout} ms)")

    mounts_by_volume = {}
    for c in pod["containers"]:
        where = f"container {c['name']}"
        csc = c.get("securityContext", {})
        need(csc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem must be true")
        need(csc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation must be false")
        need(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities must drop ALL")
        need(csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot")
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            need({"cpu", "memory"} <= set(res.get(kind, {})), f"{where}: resources.{kind} needs cpu and memory")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        need(ports.get("http") == 8080 and ports.get("metrics") == 9090, f"{where}: ports http 8080 and metrics 9090")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            got = c.get(probe, {}).get("httpGet", {})
            need(got.get("path") == path and got.get("port") in ("http", 8080), f"{where}: {probe} must GET {path} on http")
        ready = c.get("readinessProbe", {})
        need(ready.get("periodSeconds", 10) * ready.get("failureThreshold", 3) * 1000 <= delay,
             f"{where}: readiness must notice draining within the shutdown delay ({delay} ms)")
        pre_stop = c.get("lifecycle", {}).get("preStop")
        if pre_stop:
            need("exec" not in pre_stop, f"{where}: no exec preStop (the image has no shell)")
            need(delay == 0, f"{where}: a preStop sleep and the gateway's own shutdown delay add up; set one")
        for m in c.get("volumeMounts", []):
            mounts_by_volume[m["mountPath"]] = m["name"]
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                need(source["configMapRef"]["name"] in maps, f"{where}: ConfigMap {source['configMapRef']['name']} not rendered")
            if "secretRef" in source:
                need(not sandbox, f"{where}: sandbox mode must not read the Secret")
                need(source["secretRef"]["name"] == SECRET_NAME, f"{where}: Secret must be {SECRET_NAME}")

    if not sandbox:
        refs = [s for c in pod["containers"] for s in c.get("envFrom", []) if "secretRef" in s]
        need(refs and not refs[0]["secretRef"].get("optional"), "production must require the Secret")
        token_file = env.get("PARTNER_GATEWAY__PARTNER_TOKEN__REFRESH_TOKEN_FILE")
        need(token_file, "production should keep rotated refresh tokens (partner_token.refresh_token_file)")
        if token_file:
            volume = mounts_by_volume.get(str(Path(token_file).parent))
            need(volume is not None, f"{token_file}: its directory is not a mounted volume (root is read-only)")
            emptydirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
            need(volume in emptydirs, f"{token_file}: expected the per-pod emptyDir")
    else:
        listen = env.get("PARTNER_GATEWAY__SERVER__LISTEN", "127.0.0.1:8080").rsplit(":", 1)[0].strip("[]")
        if not ipaddress.ip_address(listen).is_loopback:
            need(env.get("PARTNER_GATEWAY__SANDBOX__ALLOW_NON_LOOPBACK") == "true",
                 "sandbox on a non-loopback listener needs PARTNER_GATEWAY__SANDBOX__ALLOW_NON_LOOPBACK=true")

    metrics_port = env.get("PARTNER_GATEWAY__METRICS__LISTEN", "127.0.0.1:9090")
    need(not metrics_port.startswith("127."), "metrics must listen beyond loopback in a pod")
    notes = spec["template"]["metadata"].get("annotations", {})
    need(notes.get("prometheus.io/scrape") == "true"
         and notes.get("prometheus.io/port") == metrics_port.rsplit(":", 1)[1]
         and notes.get("prometheus.io/path") == "/metrics", "prometheus.io annotations must name the metrics port and /metrics")

    for svc in by_kind.get("Service", []):
        named = {p.get("name") for c in pod["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            need(p.get("targetPort") in named, f"Service port {p.get('name')}: targetPort {p.get('targetPort')} is no container port")
        need(svc["spec"].get("selector") == selector, "Service selector must equal the Deployment's")

    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        need(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "HPA must target the Deployment")
        for pdb in by_kind.get("PodDisruptionBudget", []):
            need(pdb["spec"].get("minAvailable", 0) < hpa["spec"].get("minReplicas", 1),
                 "PDB minAvailable must stay below the HPA's minReplicas, or drains block")
    if not by_kind.get("HorizontalPodAutoscaler"):
        for pdb in by_kind.get("PodDisruptionBudget", []):
            need(pdb["spec"].get("minAvailable", 0) < spec.get("replicas", 1), "PDB minAvailable must stay below replicas")
    if sandbox:
        need(spec.get("replicas", 1) == 1, "sandbox state and signing key are per process: one replica")

    policies = by_kind.get("NetworkPolicy", [])
    need(len(policies) == 1, "expected one NetworkPolicy")
    for np in policies:
        need(set(np["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}, "NetworkPolicy must cover Ingress and Egress")
        egress_ports = {p.get("port") for rule in np["spec"].get("egress", []) for p in rule.get("ports", [])}
        # DNS; Entra, Partner Center and webhook receivers; the PostgreSQL store.
        allowed = {53} if sandbox else {53, 443, 5432}
        need(egress_ports == allowed, f"egress ports {sorted(egress_ports)}, expected {sorted(allowed)}")
        for rule in np["spec"].get("egress", []):
            need(rule.get("ports") and rule.get("to"), "every egress rule names its ports and destinations")
    return problems


def secret_template(path):
    docs = load(path)
    problems = []
    if len(docs) != 1 or docs[0].get("kind") != "Secret":
        return [f"{path}: expected exactly one Secret"]
    secret = docs[0]
    values = {**secret.get("stringData", {}), **secret.get("data", {})}
    if secret["metadata"]["name"] != SECRET_NAME:
        problems.append(f"{path}: the Secret must be called {SECRET_NAME}")
    if set(values) != SECRET_KEYS:
        problems.append(f"{path}: keys {sorted(values)}, expected {sorted(SECRET_KEYS)}")
    for key, value in values.items():
        if value not in ("", None):
            problems.append(f"{path}: {key} holds a value; the template must hold none")
    # Kustomize must not apply it (an apply would blank the real credentials).
    for kustomization in (ROOT / "deploy/kustomize").rglob("kustomization.yaml"):
        text = yaml.safe_load(kustomization.read_text())
        if any("secret" in str(r) for r in text.get("resources", [])):
            problems.append(f"{kustomization}: lists the Secret template as a resource")
    return problems


def context():
    from docker.utils.build import exclude_paths

    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    files = set(exclude_paths(str(ROOT), patterns))
    problems = []
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    sources = []
    for line in dockerfile.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    for source in sources:
        if not any(f == source or f.startswith(source.rstrip("/") + "/") for f in files):
            problems.append(f"context: COPY {source} but .dockerignore leaves it out (or it does not exist)")
    needed = ["Cargo.toml", "Cargo.lock", "build.rs", "bench/symbol-order.txt", "src/main.rs", "src/lib.rs",
              "benches/caller_verification.rs"]
    # What the code embeds at compile time from outside src/ (sqlx::migrate!("./migrations")).
    for source in ROOT.joinpath("src").rglob("*.rs"):
        for embedded in re.findall(r'migrate!\("\./([^"]+)"\)', source.read_text()):
            needed += [str(p.relative_to(ROOT)) for p in ROOT.joinpath(embedded).rglob("*") if p.is_file()]
    for path in needed:
        if path not in files:
            problems.append(f"context: {path} is needed by cargo but not sent")
    for banned in ("target/", ".git/", "tests/e2e/node_modules/", "node_modules/"):
        if any(f.startswith(banned) for f in files):
            problems.append(f"context: {banned} is sent to the builder")
    if not problems:
        print(f"deploy-check: context: {len(files)} files sent (Cargo.toml, Cargo.lock, build.rs, src/, migrations/, benches/, "
              "bench/symbol-order.txt)")
    return problems


def known_settings(debug_text):
    """(section, key) pairs in `check-config`'s pretty Debug output."""
    known, section = set(), None
    for line in debug_text.splitlines():
        m = re.match(r"^( {4}| {8})([a-z_]+): ", line)
        if not m:
            continue
        if len(m.group(1)) == 4:
            section = m.group(2)
            known.add((section, None))
        else:
            known.add((section, m.group(2)))
    return known


def config(path, binary):
    docs = load(path)
    dep = next(d for d in docs if d["kind"] == "Deployment")
    env = pod_env(docs, dep)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    # The <placeholders> of the example settings, as values of the right shape.
    substituted = 0
    for key, value in env.items():
        filled = re.sub(r"<[a-z0-9-]*id>", "00000000-0000-0000-0000-000000000000", value)
        filled = re.sub(r"<[^<>]+>", "placeholder", filled)
        substituted += filled != value
        env[key] = filled
    note = f" ({substituted} placeholder settings filled in)" if substituted else ""
    if any("secretRef" in s for s in container.get("envFrom", [])):
        env.update({key: "placeholder-for-deploy-check" for key in SECRET_KEYS})
        env["PARTNER_GATEWAY__STORE__URL"] = "postgres://gateway@db.placeholder/partner_gateway"
    run = subprocess.run(
        [binary, "check-config"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True, text=True, timeout=60,
    )
    name = Path(path).stem
    if run.returncode != 0:
        return [f"{name}: `partner-gateway check-config` refused the pod's settings: {run.stderr.strip()}"]
    known = known_settings(run.stdout)
    unknown = []
    for key in sorted(env):
        if not key.startswith("PARTNER_GATEWAY__") or key in SECRET_KEYS:
            continue
        parts = key[len("PARTNER_GATEWAY__"):].lower().split("__")
        wanted = (parts[0], None) if len(parts) == 1 else (parts[0], parts[1])
        if wanted not in known:
            unknown.append(key)
    if unknown:
        # A warning, not a failure: the binary may predate settings the manifests already use.
        print(f"deploy-check: config: {name}: WARNING this binary does not know {', '.join(unknown)} (ignored by it)")
    print(f"deploy-check: config: {name}: accepted by {binary} check-config{note}")
    return []


def main(argv):
    command, args = argv[1], argv[2:]
    problems = {
        "policy": lambda: policy(*args),
        "secret-template": lambda: secret_template(*args),
        "context": context,
        "config": lambda: config(*args),
    }[command]()
    for p in problems:
        print(f"deploy-check: FAIL {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
