#!/usr/bin/env python3
"""Checks what deploy/kubernetes promises beyond schema validity; changes nothing.

Schema validity is kubernetes-validate's job (validate.sh). This script checks the
wiring and the security properties: the kustomization lists every manifest, usher
and Redis run locked down, the probes hit usher's health endpoints on the port
usher.toml listens on, the grace period outlasts shutdown_grace, the Secret holds
placeholders only, the NetworkPolicies admit usher alone, and usher.toml uses only
keys of config/usher.example.toml. With --check-config BIN it also runs
`BIN check-config` on the ConfigMap's usher.toml with exactly the environment the
Deployment gives the container (the Secret's keys plus its env, $(VAR) expanded)
and the Secret's files in place of the mounted ones.

usage: check_manifests.py REPO_ROOT [--check-config BIN]
       check_manifests.py REPO_ROOT --self-test
Needs PyYAML (the validate.sh venv has it) and Python >= 3.11 (tomllib).
"""
import copy
import os
import re
import subprocess
import sys
import tempfile
import tomllib

import yaml

K8S_DIR = "deploy/kubernetes"
SECRET_MOUNT = "/etc/usher/secrets/"


def load(root):
    """{file name: [documents]} of every manifest, and the kustomization."""
    docs = {}
    d = os.path.join(root, K8S_DIR)
    for name in sorted(os.listdir(d)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(d, name), encoding="utf-8") as f:
                docs[name] = [x for x in yaml.safe_load_all(f) if x]
    kust = docs.pop("kustomization.yaml", [{}])[0]
    return docs, kust


def find(docs, kind, name):
    for items in docs.values():
        for x in items:
            if x.get("kind") == kind and x.get("metadata", {}).get("name") == name:
                return x
    return None


def duration_secs(text):
    total, rest = 0.0, str(text)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for num, unit in re.findall(r"(\d+)(ms|s|m|h|d)", rest):
        total += int(num) * units[unit]
    return total


def key_paths(value, prefix=""):
    """Every key path in a TOML document; array-of-table entries as NAME[]."""
    out = set()
    if isinstance(value, dict):
        for k, v in value.items():
            p = prefix + "." + k if prefix else k
            out.add(p)
            if isinstance(v, list) and v and all(isinstance(i, dict) for i in v):
                for item in v:
                    out |= key_paths(item, p + "[]")
            else:
                out |= key_paths(v, p)
    return out


def container_hardening(where, pod_spec, c):
    found = []
    psc = pod_spec.get("securityContext", {})
    sc = c.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        found.append("%s: runAsNonRoot is not true" % where)
    if sc.get("readOnlyRootFilesystem") is not True:
        found.append("%s: readOnlyRootFilesystem is not true" % where)
    if sc.get("allowPrivilegeEscalation") is not False:
        found.append("%s: allowPrivilegeEscalation is not false" % where)
    if sc.get("privileged"):
        found.append("%s: privileged" % where)
    if "ALL" not in sc.get("capabilities", {}).get("drop", []) or sc.get("capabilities", {}).get("add"):
        found.append("%s: capabilities must drop ALL and add none" % where)
    seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
    if seccomp != "RuntimeDefault":
        found.append("%s: seccompProfile is %r, want RuntimeDefault" % (where, seccomp))
    res = c.get("resources", {})
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(part, {}):
                found.append("%s: resources.%s.%s missing" % (where, part, r))
    return found


def only_from(policy, label):
    """True when every ingress rule admits exactly pods labelled name=label, nothing else."""
    rules = policy["spec"].get("ingress", [])
    if "Ingress" not in policy["spec"].get("policyTypes", []) or not rules:
        return False
    for rule in rules:
        peers = rule.get("from", [])
        if not peers or not rule.get("ports"):
            return False
        for p in peers:
            if set(p) != {"podSelector"}:
                return False
            if p["podSelector"] != {"matchLabels": {"app.kubernetes.io/name": label}}:
                return False
    return True


def usher_toml(docs):
    cm = find(docs, "ConfigMap", "usher-config")
    return cm["data"]["usher.toml"] if cm else None


def problems(root, docs, kust):
    found = []
    d = os.path.join(root, K8S_DIR)
    listed = kust.get("resources", [])
    for r in listed:
        if not os.path.exists(os.path.join(d, r)):
            found.append("kustomization lists %s, which does not exist" % r)
    for name in docs:
        if name not in listed and name != "secret.yaml":
            found.append("%s is not listed in kustomization.yaml resources" % name)
    if "secret.yaml" in listed:
        found.append("secret.yaml (placeholders) is in the kustomization: apply would overwrite real secrets")

    text = usher_toml(docs)
    if text is None:
        return found + ["no ConfigMap usher-config with data usher.toml"]
    try:
        conf = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return found + ["usher.toml in the ConfigMap is not TOML: %s" % e]
    with open(os.path.join(root, "config/usher.example.toml"), "rb") as f:
        known = key_paths(tomllib.load(f))
    for p in sorted(key_paths(conf) - known):
        found.append("usher.toml key %s does not appear in config/usher.example.toml" % p)
    listen_port = int(conf["server"]["listen"].rsplit(":", 1)[1])
    grace = duration_secs(conf["server"].get("shutdown_grace", "30s"))
    if conf.get("session", {}).get("store") != "redis":
        found.append("[session] store is not \"redis\": two replicas would not share sessions")
    state_dir = conf.get("state", {}).get("dir")

    dep = find(docs, "Deployment", "usher")
    if dep is None:
        return found + ["no Deployment usher"]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    if labels.get("app.kubernetes.io/name") != "usher":
        found.append("usher pods are not labelled app.kubernetes.io/name: usher")
    if spec.get("replicas") != 2:
        found.append("usher replicas is %r, want 2" % spec.get("replicas"))
    c = pod["containers"][0]
    found += container_hardening("deployment/usher", pod, c)
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    if ports.get("http") != listen_port:
        found.append("container port http is %r, usher.toml listens on %d" % (ports.get("http"), listen_port))
    for probe, path in (("readinessProbe", "/_usher/readyz"), ("livenessProbe", "/_usher/healthz")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("http", listen_port):
            found.append("%s is %r, want GET %s on the listen port" % (probe, get, path))
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    tgp = pod.get("terminationGracePeriodSeconds", 30)
    if not tgp > grace + pre_stop:
        found.append("terminationGracePeriodSeconds %s is not above shutdown_grace %ss + preStop %ss"
                     % (tgp, grace, pre_stop))
    if {"secretRef": {"name": "usher-secrets"}} not in c.get("envFrom", []):
        found.append("usher container has no envFrom secretRef usher-secrets")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    cfg = mounts.get("/etc/usher/usher.toml") or mounts.get("/etc/usher")
    if not cfg or vols.get(cfg["name"], {}).get("configMap", {}).get("name") != "usher-config":
        found.append("usher-config is not mounted at /etc/usher/usher.toml")
    st = mounts.get(state_dir)
    if not st or st.get("readOnly"):
        found.append("no writable volume at [state] dir %r" % state_dir)
    if "/tmp" not in mounts:
        found.append("no /tmp volume (the root filesystem is read-only)")

    redis = find(docs, "Deployment", "usher-redis")
    if redis is None:
        found.append("no Deployment usher-redis")
    else:
        rpod = redis["spec"]["template"]["spec"]
        rc = rpod["containers"][0]
        found += container_hardening("deployment/usher-redis", rpod, rc)
        args = rc.get("args", [])
        env = {e["name"]: e for e in rc.get("env", [])}
        ref = env.get("REDIS_PASSWORD", {}).get("valueFrom", {}).get("secretKeyRef", {})
        if "--requirepass" not in args or args[args.index("--requirepass") + 1] != "$(REDIS_PASSWORD)" \
                or ref != {"name": "usher-secrets", "key": "REDIS_PASSWORD"}:
            found.append("Redis does not take --requirepass from the Secret's REDIS_PASSWORD")
        if rc.get("envFrom"):
            found.append("Redis gets envFrom: it must see only its own password")

    pdb = find(docs, "PodDisruptionBudget", "usher")
    if not pdb or pdb["spec"].get("minAvailable") != 1 or \
            pdb["spec"].get("selector", {}).get("matchLabels") != {"app.kubernetes.io/name": "usher"}:
        found.append("no PodDisruptionBudget usher with minAvailable 1 selecting the usher pods")
    svc = find(docs, "Service", "usher")
    if not svc or svc["spec"].get("selector") != {"app.kubernetes.io/name": "usher"}:
        found.append("Service usher does not select the usher pods")

    policies = [x for items in docs.values() for x in items if x.get("kind") == "NetworkPolicy"]
    for target in ("usher-redis", "jira"):
        sel = {"matchLabels": {"app.kubernetes.io/name": target}}
        mine = [p for p in policies if p["spec"].get("podSelector") == sel]
        if not mine or not all(only_from(p, "usher") for p in mine):
            found.append("no NetworkPolicy admitting only usher pods to %s" % target)

    secret = find(docs, "Secret", "usher-secrets")
    if secret is None:
        found.append("no Secret usher-secrets")
    else:
        for k, v in secret.get("stringData", {}).items():
            if "CHANGE-ME" not in v and "CHANGEME" not in v:
                found.append("Secret key %s holds something other than a CHANGE-ME placeholder" % k)
        if secret.get("data"):
            found.append("Secret has base64 `data`: keep placeholders readable in stringData")
    return found


def container_env(docs):
    """The usher container's environment as the kubelet builds it: envFrom, then env with $(VAR)."""
    dep = find(docs, "Deployment", "usher")
    secret = find(docs, "Secret", "usher-secrets")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for src in c.get("envFrom", []):
        if src.get("secretRef", {}).get("name") == "usher-secrets":
            env.update({k: v for k, v in secret["stringData"].items()
                        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)})
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                    lambda m: env.get(m.group(1), m.group(0)), e["value"])
    return env


def check_config(root, docs, binary):
    """Runs BIN check-config on the ConfigMap's usher.toml; returns its exit code."""
    secret = find(docs, "Secret", "usher-secrets")
    with tempfile.TemporaryDirectory(prefix="usher-deploy-") as tmp:
        files = os.path.join(tmp, "secrets")
        os.mkdir(files)
        for k, v in secret["stringData"].items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                with open(os.path.join(files, k), "w", encoding="utf-8") as f:
                    f.write(v)
        text = usher_toml(docs).replace("file:" + SECRET_MOUNT, "file:" + files + "/")
        path = os.path.join(tmp, "usher.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update(container_env(docs))
        print("check-config with the container's environment (%s)" % ", ".join(sorted(env)))
        return subprocess.run([binary, "check-config", "-c", path], env=env, timeout=60).returncode


def self_test(root, docs, kust):
    """Each mutation of good manifests must produce a problem."""
    def dep(d):
        return find(d, "Deployment", "usher")

    def c0(d):
        return dep(d)["spec"]["template"]["spec"]["containers"][0]

    mutations = {
        "replicas 1": lambda d: dep(d)["spec"].__setitem__("replicas", 1),
        "writable root fs": lambda d: c0(d)["securityContext"].__setitem__("readOnlyRootFilesystem", False),
        "no drop ALL": lambda d: c0(d)["securityContext"]["capabilities"].__setitem__("drop", []),
        "short grace": lambda d: dep(d)["spec"]["template"]["spec"].__setitem__("terminationGracePeriodSeconds", 30),
        "readiness on healthz": lambda d: c0(d)["readinessProbe"]["httpGet"].__setitem__("path", "/_usher/healthz"),
        "redis open to namespace": lambda d: [p["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}})
                                              for p in d["networkpolicy.yaml"]
                                              if p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "usher-redis"],
        "unknown toml key": lambda d: find(d, "ConfigMap", "usher-config")["data"].__setitem__(
            "usher.toml", usher_toml(d) + "\n[server.extra]\nfoo = 1\n"),
        "real secret": lambda d: find(d, "Secret", "usher-secrets")["stringData"].__setitem__("JIRA_TOKEN", "s3cr3t"),
        "pdb 0": lambda d: find(d, "PodDisruptionBudget", "usher")["spec"].__setitem__("minAvailable", 0),
    }
    base = problems(root, docs, kust)
    if base:
        print("self-test needs clean manifests first: %s" % base)
        return 1
    silent = []
    for name, mutate in mutations.items():
        d = copy.deepcopy(docs)
        mutate(d)
        if not problems(root, d, kust):
            silent.append(name)
    if silent:
        print("check_manifests self-test: mutations not caught: %s" % silent)
        return 1
    print("check_manifests self-test: all %d broken variants caught" % len(mutations))
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    root = argv[1]
    docs, kust = load(root)
    if argv[2:] == ["--self-test"]:
        return self_test(root, docs, kust)
    found = problems(root, docs, kust)
    for p in found:
        print("%s: %s" % (K8S_DIR, p))
    if found:
        return 1
    print("%s: wiring and hardening checks passed" % K8S_DIR)
    if len(argv) == 4 and argv[2] == "--check-config":
        return check_config(root, docs, argv[3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
