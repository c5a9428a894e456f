"""A real TLS + basic-auth front for the test node: Debian's nginx with a self-signed CA.

`openssl` makes a CA and a server certificate for 127.0.0.1 (and a second, unrelated CA, for the
"wrong CA" case), `openssl passwd -apr1` the htpasswd line; nginx runs in the foreground as a
process of the test, with its prefix, pid, logs and temp paths in a temp dir (never the system
service), proxying to the node over plain HTTP.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

USER = "shipper"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {done.stderr.strip()}")


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key.name, "-out", crt.name, "-days", "2", "-subj", f"/CN=faultwarden test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=d)
    return key, crt


def make_server_cert(d: Path, ca_key: Path, ca_crt: Path) -> tuple[Path, Path]:
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", ca_crt.name, "-CAkey", ca_key.name,
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext", cwd=d)
    return d / "server.key", d / "server.crt"


def htpasswd_line(user: str, password: str) -> str:
    done = subprocess.run(["openssl", "passwd", "-apr1", "-stdin"], input=password, capture_output=True,
                          text=True, check=True)
    return f"{user}:{done.stdout.strip()}\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    client_max_body_size 256m;
    upstream elasticsearch {{ server {upstream}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {dir}/server.crt;
        ssl_certificate_key {dir}/server.key;
        auth_basic "faultwarden test";
        auth_basic_user_file {dir}/htpasswd;
        location / {{
            proxy_pass http://elasticsearch;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


@dataclass
class TlsFront:
    url: str
    ca: Path  # the CA that signed nginx's certificate
    other_ca: Path  # a CA that did not
    user: str
    password: str
    proc: subprocess.Popen
    dir: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


def start_tls_front(d: Path, upstream_url: str, password: str, timeout: float = 30.0) -> TlsFront:
    """nginx on 127.0.0.1:<free port> with TLS and basic auth, in front of `upstream_url`."""
    nginx = nginx_binary()
    if nginx is None:
        raise RuntimeError("nginx is not installed (Debian: nginx-light; scripts/install-test-deps.sh)")
    d.mkdir(parents=True, exist_ok=True)
    (d / "tmp").mkdir(exist_ok=True)
    ca_key, ca = make_ca(d, "ca")
    _, other_ca = make_ca(d, "other-ca")
    make_server_cert(d, ca_key, ca)
    (d / "htpasswd").write_text(htpasswd_line(USER, password))
    upstream = upstream_url.split("://", 1)[1].rstrip("/")
    # As root the workers would run as `nobody`, who cannot read the test's private temp dir.
    user = "user root root;" if os.geteuid() == 0 else ""
    last_error = ""
    for _ in range(3):  # a free port can be taken between finding it and nginx binding it
        port = _free_port()
        (d / "nginx.conf").write_text(CONF.format(dir=d, upstream=upstream, port=port, user=user))
        proc = subprocess.Popen([nginx, "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf"),
                                 "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return TlsFront(f"https://127.0.0.1:{port}", ca, other_ca, USER, password, proc, d)
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        last_error = proc.stderr.read().decode(errors="replace") + (d / "error.log").read_text(errors="replace")
    raise RuntimeError(f"nginx did not start: {last_error.strip()[-2000:]}")
