#!/usr/bin/env python3
"""Checks the properties deploy/Dockerfile promises; it must not build anything.

usage: check_dockerfile.py DOCKERFILE      exit 0 when every check passes, 1 otherwise
       check_dockerfile.py --self-test     proves each check can fail on a bad Dockerfile
"""
import json
import re
import sys

PINNED_BUILDER = "rust:1.95-slim-bookworm"
RUNTIME_BASE = "debian:bookworm-slim"


def instructions(text):
    """(KEYWORD, argument) per instruction: comments dropped, continuations joined."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if cur and line.startswith("#"):
            continue  # comment inside a continued RUN
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        kw, _, arg = cur.partition(" ")
        out.append((kw.upper(), arg.strip()))
        cur = ""
    if cur:
        kw, _, arg = cur.partition(" ")
        out.append((kw.upper(), arg.strip()))
    return out


def stages(instrs):
    """[{image, name, instrs}] per FROM."""
    result = []
    for kw, arg in instrs:
        if kw == "FROM":
            words = [w for w in arg.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append({"image": words[0] if words else "", "name": name, "instrs": []})
        elif result:
            result[-1]["instrs"].append((kw, arg))
    return result


def image_pinned(image):
    """A tag other than latest, or a digest."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


def exec_form(arg):
    try:
        value = json.loads(arg)
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def problems(text):
    found = []
    instrs = instructions(text)
    st = stages(instrs)
    if len(st) < 2:
        found.append("not multi-stage: %d FROM instruction(s), want a build and a runtime stage" % len(st))
        if not st:
            return found
    names = {s["name"] for s in st if s["name"]}
    for s in st:
        if s["image"] not in names and not image_pinned(s["image"]):
            found.append("base image %r is not pinned (use a version tag or @sha256 digest, never latest)" % s["image"])
    if st[0]["image"].split("@")[0] != PINNED_BUILDER:
        found.append("build stage is %r, want %s" % (st[0]["image"], PINNED_BUILDER))
    # deploy/build.sh is `cargo build --release` with the committed PGO profile.
    if not any(kw == "RUN" and re.search(r"cargo build\b.*--release|deploy/build\.sh\b", a)
               and "--locked" in a for kw, a in st[0]["instrs"]):
        found.append("build stage has no `cargo build --release --locked` (or `deploy/build.sh --locked`)")
    final = st[-1]
    if final["image"].split("@")[0] != RUNTIME_BASE:
        found.append("runtime stage is %r, want %s" % (final["image"], RUNTIME_BASE))
    for kw, a in instrs:
        if kw == "ADD" and re.search(r"(https?|git)://|git@", a):
            found.append("ADD fetches from the network: %r (download in a RUN with a checksum, or COPY)" % a)
    for kw, a in final["instrs"]:
        if kw == "RUN" and "apt-get install" in a:
            pkgs = [w for w in a.split("apt-get install", 1)[1].split("&&")[0].split() if not w.startswith("-")]
            if pkgs != ["ca-certificates"]:
                found.append("runtime stage installs %s, want ca-certificates only" % pkgs)
            if "--no-install-recommends" not in a:
                found.append("runtime apt-get install lacks --no-install-recommends")
    users = [a for kw, a in final["instrs"] if kw == "USER"]
    if not users:
        found.append("runtime stage has no USER: the container would run as root")
    else:
        uid = users[-1].split(":")[0]
        if uid in ("root", "0"):
            found.append("USER is root")
        elif not uid.isdigit():
            found.append("USER %r is not numeric: Kubernetes runAsNonRoot cannot verify it" % users[-1])
        elif int(uid) != 10001:
            found.append("USER uid is %s, want 10001" % uid)
    last = {kw: a for kw, a in final["instrs"]}
    if last.get("STOPSIGNAL") != "SIGTERM":
        found.append("STOPSIGNAL is %r, want SIGTERM" % last.get("STOPSIGNAL"))
    if exec_form(last.get("ENTRYPOINT", "")) != ["/usr/local/bin/usher"]:
        found.append("ENTRYPOINT is %r, want [\"/usr/local/bin/usher\"]" % last.get("ENTRYPOINT"))
    if exec_form(last.get("CMD", "")) != ["serve", "-c", "/etc/usher/usher.toml"]:
        found.append("CMD is %r, want [\"serve\",\"-c\",\"/etc/usher/usher.toml\"]" % last.get("CMD"))
    if not any(kw == "COPY" and "--from=" in a and "/usr/local/bin/usher" in a for kw, a in final["instrs"]):
        found.append("runtime stage does not COPY --from the build stage to /usr/local/bin/usher")
    return found


BAD = """FROM rust:latest
ADD https://example.com/tool.tar.gz /tmp/
RUN cargo build
USER root
STOPSIGNAL SIGKILL
CMD usher serve
"""

BAD_RUNTIME = """FROM rust:1.95-slim-bookworm AS build
RUN cargo build --release --locked
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y curl ca-certificates
COPY --from=build /out/usher /usr/local/bin/usher
USER usher
ENTRYPOINT ["/usr/local/bin/usher"]
CMD ["serve","-c","/etc/usher/usher.toml"]
STOPSIGNAL SIGTERM
"""


def self_test():
    bad = problems(BAD)
    expect = ["not multi-stage", "not pinned", "cargo build --release --locked", "ADD fetches",
              "USER is root", "STOPSIGNAL", "ENTRYPOINT", "CMD"]
    missing = [e for e in expect if not any(e in p for p in bad)]
    bad2 = problems(BAD_RUNTIME)
    expect2 = ["ca-certificates only", "not numeric", "--no-install-recommends"]
    missing += [e for e in expect2 if not any(e in p for p in bad2)]
    if missing:
        print("check_dockerfile self-test: checks that did not fire: %s" % missing)
        return 1
    print("check_dockerfile self-test: %d + %d problems found in the bad Dockerfiles, as expected"
          % (len(bad), len(bad2)))
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) != 2:
        print(__doc__)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        found = problems(f.read())
    for p in found:
        print("%s: %s" % (argv[1], p))
    if not found:
        print("%s: multi-stage, pinned bases, non-root USER 10001, no ADD of URLs, SIGTERM, exec-form ENTRYPOINT/CMD" % argv[1])
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
