#!/usr/bin/env python3
"""Start and stop the real Elasticsearch that the tests (and benchmarks) talk to.

The node is Maven Central's `org.elasticsearch.distribution.integ-test-zip:elasticsearch` (the
core server, no x-pack features), fetched once with `mvn dependency:copy` into a cache, run on a
Java 21+ JDK as an unprivileged user (Elasticsearch refuses root) on 127.0.0.1 with a small heap.

    python3 scripts/es.py start --workdir DIR [--version 9.2.4] [--timeout 600]
        prints the URL; DIR/node.url (or DIR/node.failed with the reason) says the outcome
    python3 scripts/es.py stop --workdir DIR

Standard library only: it runs before the project's own venv exists.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

DEFAULT_VERSION = "9.2.4"
USER = "fw-es"
ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"


def cache_dir() -> Path:
    if os.environ.get("FAULTWARDEN_ES_CACHE"):
        return Path(os.environ["FAULTWARDEN_ES_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/faultwarden/elasticsearch")
    return Path.home() / ".cache/faultwarden/elasticsearch"


def note_time(what: str, seconds: float) -> None:
    """One line per slow step into $FAULTWARDEN_TIMINGS, for the test run's closing summary."""
    if os.environ.get("FAULTWARDEN_TIMINGS"):
        with open(os.environ["FAULTWARDEN_TIMINGS"], "a") as fh:
            fh.write(f"{what}: {seconds:.0f} s\n")


def fetch(version: str) -> Path:
    """The unpacked distribution, fetched and unpacked once per machine."""
    home = cache_dir() / f"elasticsearch-{version}"
    if (home / "bin/elasticsearch").exists():
        return home
    cache_dir().mkdir(parents=True, exist_ok=True)
    zip_path = cache_dir() / f"elasticsearch-{version}.zip"
    if not zip_path.exists():
        began = time.monotonic()
        cmd = ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={ARTIFACT.format(version=version)}",
               f"-DoutputDirectory={cache_dir()}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"mvn could not fetch Elasticsearch {version}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        note_time(f"Elasticsearch {version} fetch", time.monotonic() - began)
    staging = cache_dir() / f".unpack-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(staging)
    for p in staging.rglob("*"):  # zipfile drops the mode bits
        if p.parent.name == "bin" or p.suffix == ".sh" or "/bin/" in str(p):
            p.chmod(0o755)
    inner = next(staging.iterdir())
    os.replace(inner, home) if not home.exists() else None
    shutil.rmtree(staging, ignore_errors=True)
    return home


def java_home(version: str) -> str:
    """A JDK able to run this version: 9.x needs Java 21+, 8.x runs on 17."""
    need = 21 if int(version.split(".")[0]) >= 9 else 17
    if os.environ.get("ES_JAVA_HOME"):
        return os.environ["ES_JAVA_HOME"]
    candidates = sorted(Path("/usr/lib/jvm").glob("*"), reverse=True) if Path("/usr/lib/jvm").exists() else []
    for jdk in candidates:
        release = jdk / "release"
        if not (jdk / "bin/java").exists() or not release.exists():
            continue
        for line in release.read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                major = int(line.split("=")[1].strip('"').split(".")[0])
                if major >= need:
                    return str(jdk)
    raise RuntimeError(f"Elasticsearch {version} needs a Java {need}+ JDK; none found in /usr/lib/jvm "
                       "(set ES_JAVA_HOME)")


def ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True)
        return pwd.getpwnam(USER)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for p in path.rglob("*"):
        os.chown(p, uid, gid, follow_symlinks=False)


def start(workdir: Path, version: str = DEFAULT_VERSION, timeout: float = 600,
          heap: str = "512m", java_opts: str | None = None) -> str:
    """Start a node whose files all live in `workdir`; return its URL once it answers."""
    began = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    home = fetch(version)
    conf, data, logs, tmp = (workdir / n for n in ("config", "data", "logs", "tmp"))
    shutil.rmtree(conf, ignore_errors=True)
    shutil.copytree(home / "config", conf)
    for d in (data, logs, tmp):
        d.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        user = ensure_user()
        _chown_tree(workdir, user.pw_uid, user.pw_gid)
    extra = java_opts if java_opts is not None else os.environ.get(
        "FAULTWARDEN_TEST_ES_JAVA_OPTS", "-XX:TieredStopAtLevel=1")
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(workdir), "ES_PATH_CONF": str(conf),
        "ES_JAVA_HOME": java_home(version), "ES_TMPDIR": str(tmp),
        "ES_JAVA_OPTS": f"-Xms{heap} -Xmx{heap} {extra}".strip(),
    }
    settings = {
        "cluster.name": "faultwarden-test", "node.name": "fw-test", "discovery.type": "single-node",
        "network.host": "127.0.0.1", "http.port": "0", "transport.port": "0",
        "node.portsfile": "true", "path.data": str(data), "path.logs": str(logs),
        "xpack.security.enabled": "false", "action.destructive_requires_name": "false",
        "cluster.routing.allocation.disk.watermark.low": "1b",
        "cluster.routing.allocation.disk.watermark.high": "1b",
        "cluster.routing.allocation.disk.watermark.flood_stage": "1b",
        **json.loads(os.environ.get("FAULTWARDEN_TEST_ES_SETTINGS", "{}")),
    }
    cmd = [str(home / "bin/elasticsearch")] + [f"-E{k}={v}" for k, v in settings.items()]
    out = open(workdir / "stdout.log", "wb")
    kwargs = {"user": USER, "group": pwd.getpwnam(USER).pw_gid, "extra_groups": []} if os.geteuid() == 0 else {}
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=workdir, **kwargs)
    (workdir / "node.pid").write_text(str(proc.pid))
    ports = logs / "http.ports"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (workdir / "stdout.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Elasticsearch exited with {proc.returncode}:\n{tail}")
        if ports.exists() and ports.read_text().strip():
            url = "http://" + ports.read_text().split()[0]
            try:
                with urllib.request.urlopen(f"{url}/_cluster/health?wait_for_status=yellow&timeout=5s",
                                            timeout=10) as resp:
                    if resp.status == 200:
                        (workdir / "node.url").write_text(url)
                        note_time(f"Elasticsearch {version} start", time.monotonic() - began)
                        return url
            except OSError:
                pass
        time.sleep(0.5)
    stop(workdir)
    raise RuntimeError(f"Elasticsearch did not answer within {timeout:.0f} s; see {workdir}/stdout.log")


def stop(workdir: Path, grace: float = 30) -> None:
    pid_file = workdir / "node.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            try:  # reap it when it is our child
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                pass
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pid_file.unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["fetch", "start", "stop"])
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--version", default=DEFAULT_VERSION)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    if args.action == "fetch":
        print(fetch(args.version))
        return 0
    if args.workdir is None:
        ap.error("--workdir is needed")
    if args.action == "stop":
        stop(args.workdir)
        return 0
    # A SIGTERM while the node starts (the test run ended early) must not leave a JVM behind.
    signal.signal(signal.SIGTERM, lambda *_: (stop(args.workdir, grace=5), sys.exit(143)))
    try:
        print(start(args.workdir, args.version, args.timeout))
    except Exception as exc:  # the reason goes where the waiting tests read it
        args.workdir.mkdir(parents=True, exist_ok=True)
        (args.workdir / "node.failed").write_text(str(exc))
        print(f"es.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
