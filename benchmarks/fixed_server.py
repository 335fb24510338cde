"""Debian's nginx on loopback answering every request with one fixed ``ReportConversion`` success body.

The throughput benchmarks measure *our* client, so the server must not be the bottleneck: the Python
emulator saturates near 800 requests/s on 2 cores, nginx serves tens of thousands from one worker. It
verifies nothing; signature checking is the emulator's job and the tests' (``tests/providers``).

    with FixedServer(latency=0.05) as server:   # needs /usr/sbin/nginx (apt-get install nginx-light)
        server.url                              # http://127.0.0.1:<port>, each answer 50 ms late

With ``latency`` the answer is delayed by nginx's echo module (``echo_sleep``, a timer, no thread held), as a
provider's round trip would be; nginx-light ships the module. With ``log_arrivals`` nginx writes one access log
line per request, from which ``arrivals()`` gives each request's arrival time (the log's time of writing minus
the request's processing time, millisecond resolution): what the provider would see of our rate.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

REPORT_OK = (
    '{"Response":{"ReportConversionStatus":{"Code":"ok","Message":"report success"},'
    '"RequestId":"0b2d5bd1-9d8c-4f2e-8a54-2a7b7f1c0f00"}}'
)
NGINX_CANDIDATES = ("/usr/sbin/nginx", "nginx")
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"

CONFIG = """\
{load}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format arrivals '$msec $request_time';
    access_log {access_log};
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
{answer}
        }}
    }}
}}
"""


def find_nginx() -> str | None:
    for candidate in NGINX_CANDIDATES:
        path = shutil.which(candidate)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FixedServer:
    """An nginx process of our own (own config, own temp dir, foreground), stopped on exit."""

    def __init__(self, body: str = REPORT_OK, *, latency: float = 0.0, log_arrivals: bool = False) -> None:
        nginx = find_nginx()
        if nginx is None:
            raise RuntimeError("nginx not found: apt-get install -y nginx-light")
        self._nginx = nginx
        self._body = body
        self.latency = latency
        self.log_arrivals = log_arrivals
        self._dir = Path(tempfile.mkdtemp(prefix="otp-bench-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FixedServer:
        conf = self._dir / "nginx.conf"
        body = self._body.replace("'", "\\'")
        if self.latency > 0:
            load = f"load_module {ECHO_MODULE};"
            answer = (
                "            echo_read_request_body;\n"
                f"            echo_sleep {self.latency:.3f};\n"
                f"            echo -n '{body}';"
            )
        else:
            load, answer = "", f"            return 200 '{body}';"
        access_log = f"{self._dir / 'access.log'} arrivals" if self.log_arrivals else "off"
        conf.write_text(
            CONFIG.format(load=load, dir=self._dir, port=self.port, answer=answer, access_log=access_log)
        )
        self._proc = subprocess.Popen([self._nginx, "-c", str(conf), "-p", str(self._dir)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self._proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not start; see {self._dir / 'error.log'}")

    def arrivals(self) -> list[float]:
        """Arrival time (epoch seconds) of every request so far, in log order (``log_arrivals`` only)."""
        path = self._dir / "access.log"
        if not path.exists():
            return []
        times = []
        for line in path.read_text().splitlines():
            written, _, taken = line.partition(" ")
            times.append(float(written) - float(taken))
        return times

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> FixedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
