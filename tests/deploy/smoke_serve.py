#!/usr/bin/env python3
"""Runs the ConfigMap's usher.toml for real, on loopback, under the pod's constraints.

usher serve (USHER_BIN) starts with the ConfigMap's usher.toml, the container's
environment (Secret placeholders + Deployment env), a local redis-server with the
Secret's REDIS_PASSWORD, and `usher sandbox` standing in for Google and the
Atlassian upstreams (only the IdP, directory and upstream URLs are rewritten to
it). When run as root it also runs usher as uid/gid 10001 in a mount namespace
whose root filesystem is read-only except the state directory, as in the pod.
Passes when /_usher/healthz, /_usher/readyz and /_usher/jwks.json answer 200 and
SIGTERM ends usher with exit 0. Everything listens on 127.0.0.1 and is stopped at
the end. Never touches the Kubernetes manifests.

usage: smoke_serve.py REPO_ROOT USHER_BIN     (PyYAML needed: use the validate.sh venv)
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_manifests as cm  # noqa: E402


def free_port(span=1):
    """A loopback port p with p..p+span-1 free at the time of asking."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + span < 65000 and all(_free(p + i) for i in range(span)):
            return p
    raise RuntimeError("no free loopback port range")


def _free(p):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
            return True
        except OSError:
            return False


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_status(url, want, seconds, proc=None):
    """True once url answers `want`; False after `seconds` or when proc has exited."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and (proc is None or proc.poll() is None):
        if get(url) == want:
            return True
        time.sleep(0.25)
    return False


def main(root, usher_bin):
    docs, _ = cm.load(root)
    secret = cm.find(docs, "Secret", "usher-secrets")["stringData"]
    text = cm.usher_toml(docs)
    procs = []
    tmp = tempfile.mkdtemp(prefix="usher-smoke-")
    os.chmod(tmp, 0o755)
    try:
        redis_port, sandbox_port, usher_port = free_port(), free_port(8), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--requirepass", secret["REDIS_PASSWORD"], "--port", str(redis_port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        sandbox_out = open(os.path.join(tmp, "sandbox.out"), "w+")
        procs.append(subprocess.Popen([usher_bin, "sandbox", "--port", str(sandbox_port)],
                                      stdout=sandbox_out, stderr=subprocess.STDOUT))
        if not wait_status("http://127.0.0.1:%d/.well-known/openid-configuration" % sandbox_port, 200, 30,
                           procs[-1]):
            print("smoke: usher sandbox did not come up")
            return 1
        # The OIDC emulator answers before the sandbox has printed its summary:
        # wait for the ready line (printed after the summary), bounded.
        snippet, end = "", time.monotonic() + 30
        while "usher sandbox ready" not in snippet and time.monotonic() < end:
            time.sleep(0.2)
            sandbox_out.seek(0)
            snippet = sandbox_out.read()
        if "usher sandbox ready" not in snippet:
            print("smoke: usher sandbox did not print its summary")
            return 1
        sa = re.search(r'service_account_key = "file:([^"]+)"', snippet).group(1)
        client_id = re.search(r'client_id = "([^"]+)"', snippet).group(1)
        client_secret = re.search(r'client_secret = "([^"]+)"', snippet).group(1)
        admin = re.search(r'admin_subject = "([^"]+)"', snippet).group(1)
        shutil.copy(sa, os.path.join(tmp, "sa.json"))
        os.chmod(os.path.join(tmp, "sa.json"), 0o644)

        state = os.path.join(tmp, "state")
        os.mkdir(state, 0o700)
        hosts = {"jira": sandbox_port + 2, "confluence": sandbox_port + 3, "bitbucket": sandbox_port + 4}
        t = re.sub(r'(?m)^listen = ".*"$', 'listen = "127.0.0.1:%d"' % usher_port, text)
        t = re.sub(r'(?m)^kind = "google"$',
                   'kind = "google"\nissuer = "http://127.0.0.1:%d"' % sandbox_port, t)
        t = re.sub(r'(?m)^service_account_key = ".*"$',
                   'service_account_key = "file:%s/sa.json"\napi_url = "http://127.0.0.1:%d"\n'
                   'token_url = "http://127.0.0.1:%d/token"' % (tmp, sandbox_port + 1, sandbox_port + 1), t)
        t = re.sub(r'(?m)^admin_subject = ".*"$', 'admin_subject = "%s"' % admin, t)
        t = re.sub(r'http://(jira|confluence|bitbucket):\d+',
                   lambda m: "http://127.0.0.1:%d" % hosts[m.group(1)], t)
        t = re.sub(r'(?m)^dir = ".*"$', 'dir = "%s"' % state, t)
        conf = os.path.join(tmp, "usher.toml")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(t)
        os.chmod(conf, 0o644)

        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update(cm.container_env(docs))
        env["USHER_REDIS_URL"] = re.sub(r"@[^/]+/", "@127.0.0.1:%d/" % redis_port, env["USHER_REDIS_URL"])
        env.update(GOOGLE_CLIENT_ID=client_id, GOOGLE_CLIENT_SECRET=client_secret)
        cmd = [os.path.abspath(usher_bin), "serve", "-c", conf]
        if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("setpriv"):
            shutil.copy(usher_bin, os.path.join(tmp, "usher"))
            os.chown(state, 10001, 10001)
            inner = ("set -e; mount --make-rprivate /; mount --bind '{s}' '{s}'; "
                     "mount -o remount,bind,ro /; "
                     "exec setpriv --reuid 10001 --regid 10001 --clear-groups --no-new-privs "
                     "'{tmp}/usher' serve -c '{conf}'").format(s=state, tmp=tmp, conf=conf)
            cmd = ["unshare", "-m", "--", "sh", "-c", inner]
            print("smoke: usher as uid 10001, read-only root filesystem, writable %s only" % state)
        else:
            print("smoke: not root: usher runs unconfined (no read-only root, own uid)")
        log = open(os.path.join(tmp, "usher.log"), "w+")
        usher = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(usher)
        base = "http://127.0.0.1:%d/_usher/" % usher_port
        ok = True
        for path in ("healthz", "readyz", "jwks.json"):
            if wait_status(base + path, 200, 30, usher):
                print("smoke: GET /_usher/%s 200" % path)
            else:
                print("smoke: GET /_usher/%s is %s, want 200" % (path, get(base + path)))
                ok = False
        usher.send_signal(signal.SIGTERM)
        try:
            rc = usher.wait(timeout=40)
        except subprocess.TimeoutExpired:
            rc = None
        print("smoke: exit after SIGTERM: %s" % rc)
        ok = ok and rc == 0
        if not ok:
            log.seek(0)
            print(log.read()[-4000:])
        return 0 if ok else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
