"""Shared benchmark harness: the emulator and gunicorn as separate processes, wrk, RSS sampling, figures.

Every process here is one this harness started, and it is stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
PYTHON = sys.executable

#: gunicorn as every benchmark serves the apps: one worker per core, threads so that a request blocked on I/O
#: (SQLite, or the inline provider call) does not hold a whole process, and HTTP keep-alive (sync workers close
#: every connection, which would make wrk measure TCP handshakes). BENCH_WORKERS / BENCH_THREADS override them.
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
THREADS = int(os.environ.get("BENCH_THREADS", "4"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Emulator:
    """``benchmarks/_emulator.py`` in its own process; ``command`` talks to it over stdin/stdout."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self.url = ""
        self._next_phone = 0

    def start(self) -> Emulator:
        cmd = [PYTHON, str(BENCH / "_emulator.py"), "--latency", str(self.latency)]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, bufsize=1
        )
        self.url = str(self._read()["url"])
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _read(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the emulator process ended")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"emulator: {reply['error']}")
        return reply

    def command(self, text: str) -> dict[str, Any]:
        with self._lock:
            assert self._proc is not None and self._proc.stdin is not None
            self._proc.stdin.write(text + "\n")
            self._proc.stdin.flush()
            return self._read()

    def issue(self, count: int) -> list[tuple[str, str]]:
        """``count`` (phone, serial) pairs for fresh numbers: messages the emulator knows it sent."""
        start = self._next_phone
        self._next_phone += count
        serials: list[str] = self.command(f"issue {start} {count}")["serials"]
        return [(f"+86137{n:08d}", s) for n, s in zip(range(start, start + count), serials, strict=False)]

    def counts(self) -> dict[str, Any]:
        return self.command("counts")

    def reports_ok(self) -> int:
        return int(self.counts()["calls"].get("ReportConversion", {}).get("ok", 0))

    def stop(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.write("quit\n")
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tencent_config(emulator_url: str) -> dict[str, Any]:
    """The extension's provider keys for the emulator's Tencent account."""
    from flask_otp_conversion.testing import ProviderEmulator

    return {
        "OTP_CONVERSION_PROVIDER": "tencent",
        "OTP_CONVERSION_TENCENT_ENDPOINT": emulator_url,
        "OTP_CONVERSION_TENCENT_SECRET_ID": ProviderEmulator.TENCENT_SECRET_ID,
        "OTP_CONVERSION_TENCENT_SECRET_KEY": ProviderEmulator.TENCENT_SECRET_KEY,
        "OTP_CONVERSION_TENCENT_SDK_APP_ID": ProviderEmulator.TENCENT_SDK_APP_ID,
        "OTP_CONVERSION_TENCENT_SIGN_NAME": "Example",
        "OTP_CONVERSION_TENCENT_TEMPLATE_ID": "1110",
    }


def per_worker(connections: int) -> int:
    """A worker's cap on connections (``Server(max_connections=...)``) for a load of ``connections``: its fair
    share and two more. gunicorn's workers race to accept a load generator's connections, and without a cap one
    sometimes wins them all, which halves the throughput of whatever app it serves."""
    return connections // WORKERS + 2


class Server:
    """gunicorn serving ``benchmarks/_apps.py:<factory>()`` with ``config`` (passed as JSON in the environment)."""

    def __init__(
        self,
        factory: str,
        config: dict[str, Any],
        workdir: Path,
        *,
        conversion: bool = True,
        max_connections: int | None = None,
        root: Path = ROOT,
    ) -> None:
        """``max_connections``: per worker (gunicorn's ``--worker-connections``). A worker that holds that many
        stops accepting, so a load generator's connections cannot all land on one worker."""
        self.factory = factory
        self.max_connections = max_connections
        self.config = config
        self.workdir = workdir
        self.conversion = conversion
        self.root = root  # the checkout whose package and example app are served
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self, timeout: float = 30.0) -> Server:
        self.port = free_port()
        env = dict(os.environ, BENCH_APP_CONFIG=json.dumps(self.config), PYTHONPATH=f"{BENCH}:{self.root}")
        cmd = [
            PYTHON, "-m", "gunicorn",
            "--workers", str(WORKERS), "--worker-class", "gthread", "--threads", str(THREADS),
            "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning",
            "--graceful-timeout", "10", "--chdir", str(self.root),
            *(["--worker-connections", str(self.max_connections)] if self.max_connections else []),
            f"_apps:{self.factory}()",
        ]  # fmt: skip
        log = (self.workdir / f"gunicorn-{self.factory}-{self.port}.log").open("wb")
        self._proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self._proc.returncode}; see {log.name}")
            if len(self.worker_pids()) == WORKERS and _answers(self.url + "/"):
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not come up within {timeout} s; see {log.name}")

    def worker_pids(self) -> list[int]:
        return children(self.pid)

    def cost_pids(self) -> list[int]:
        """The workers and their children (a deliverer's delivery process): whose CPU the app costs."""
        workers = self.worker_pids()
        return workers + [child for pid in workers for child in children(pid)]

    def stop(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: the ppid is the 2nd field after the last ")"
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """VmRSS of a set of processes every ``interval`` seconds, in a background thread."""

    def __init__(self, pids: Sequence[int], interval: float = 0.5) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.first: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        for pid in self.pids:
            value = rss_kib(pid)
            if value is None:
                continue
            self.first.setdefault(pid, value)
            self.peak[pid] = max(self.peak.get(pid, 0), value)
            self.last[pid] = value

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def growth_mib(self) -> dict[int, float]:
        """Peak minus first sample, per process, in MiB."""
        return {pid: (self.peak[pid] - self.first[pid]) / 1024 for pid in self.first}


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def as_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "rps": round(self.rps, 1),
            "non2xx": self.non2xx,
            "socket_errors": self.socket_errors,
            "p50_ms": round(self.p50_ms, 2),
            "p90_ms": round(self.p90_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
        }


def parse_wrk(output: str) -> WrkResult:
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line[len("WRKJSON ") :])
            return WrkResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                non2xx=data["non2xx"],
                socket_errors=sum(data["errors"].values()),
                p50_ms=data["p50_us"] / 1000,
                p90_ms=data["p90_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                max_ms=data["max_us"] / 1000,
            )
    raise RuntimeError(f"no WRKJSON line in wrk's output:\n{output}")


def wrk(
    url: str,
    script: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    script_args: Iterable[str] = (),
    headers: Iterable[str] = (),
    timeout: float = 10.0,
) -> WrkResult:
    """Run ``wrk`` (a separate process) with ``benchmarks/<script>`` and parse the JSON line its done() prints."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
           "--timeout", f"{timeout:g}s", "-s", str(BENCH / script)]  # fmt: skip
    for header in headers:
        cmd += ["-H", header]
    cmd.append(url)
    args = list(script_args)
    if args:
        cmd += ["--", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 120)
    return parse_wrk(done.stdout)


def wrk_verify(
    url: str,
    pairs_file: Path,
    *,
    seconds: float,
    connections: int,
    limit: int | None = None,
    headers: Iterable[str] = (),
) -> WrkResult:
    """POST /otp/verify with the file's pairs; ``limit``: stop after that many answers (the file needs
    ``connections`` more pairs than that)."""
    args = [str(pairs_file), "1"] + ([str(limit)] if limit is not None else [])
    return wrk(
        url + "/otp/verify", "verify.lua", seconds=seconds, connections=connections, script_args=args, headers=headers
    )


def warm_up(url: str, pairs_file: Path, count: int) -> WrkResult:
    """``count`` verifications, a new connection each, so that every gunicorn worker serves some (and starts its
    reporter) before anything is measured: kept-alive connections may all land on one worker."""
    return wrk_verify(url, pairs_file, seconds=max(3, count / 100), connections=4, limit=count,
                      headers=["Connection: close"])


def write_pairs(path: Path, pairs: Iterable[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{phone},{code}\n" for phone, code in pairs))
    return path


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max, and the half-range as a percentage of the median."""
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    return {
        "median": round(med, 3),
        "min": round(lo, 3),
        "max": round(hi, 3),
        "spread_pct": round(100 * (hi - lo) / 2 / med, 1) if med else 0.0,
    }


def wait_for(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))}, Linux {platform.release()}"
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip()
    import gunicorn

    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "loadavg": load,
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "os": os_name,
        "gunicorn": gunicorn.__version__,
        "wrk": wrk_version,
    }


def write_json(path: str | None, figures: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(figures, indent=2))


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)


STATS_TOKEN = "bench-stats-token"


def app_config(emulator_url: str, workdir: Path, **extra: Any) -> dict[str, Any]:
    """Config for one served app: its own SQLite files in ``workdir``, codes valid for the whole run."""
    workdir.mkdir(parents=True, exist_ok=True)
    return {
        **tencent_config(emulator_url),
        "OTP_CONVERSION_STORE_URL": f"sqlite:///{workdir / 'otp_conversion.db'}",
        "OTP_CONVERSION_STATS_TOKEN": STATS_TOKEN,
        "OTP_CONVERSION_MATCH_WINDOW": 7200,
        "EXAMPLE_OTP_DB": str(workdir / "example_otp.db"),
        "EXAMPLE_OTP_TTL": 7200,
        "SECRET_KEY": "bench-secret-key",
        **extra,
    }


def outbox(config: dict[str, Any]) -> tuple[int, int]:
    """(pending, dead) in the app's outbox, read from its SQLite file; pending counts the verifications still
    in the spool (not yet applied to the store) too."""
    from flask_otp_conversion.store import SQLiteStore, open_store
    from flask_otp_conversion.store.spool import folder_for, unapplied

    store = open_store(config["OTP_CONVERSION_STORE_URL"])
    try:
        stats = store.outbox_stats(now=time.time())
        spooled = unapplied(store, folder_for(store.path)) if isinstance(store, SQLiteStore) else 0
        return stats.pending + spooled, stats.dead
    finally:
        store.close()


def wait_drained(config: dict[str, Any], timeout: float) -> float | None:
    """Seconds until the outbox has nothing pending, or None at the timeout."""
    started = time.perf_counter()
    if wait_for(lambda: outbox(config)[0] == 0, timeout, interval=0.25):
        return time.perf_counter() - started
    return None


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds the processes have used so far (/proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@contextlib.contextmanager
def checkout(ref: str | None) -> Iterator[Path | None]:
    """A throw-away git worktree of ``ref`` (detached HEAD) to measure another commit's code with this harness;
    removed afterwards. None without a ref."""
    if not ref:
        yield None
        return
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="otp-bench-base-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)


def commit_of(root: Path) -> str:
    done = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=root, capture_output=True, text=True)
    # the results of an earlier run in the same checkout are not a change to the code measured
    status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/RESULTS.md"]
    dirty = subprocess.run(status, cwd=root, capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + (" (+ uncommitted changes)" if dirty else "")


def wrk_plain(url: str, script: str, *, seconds: float, connections: int) -> float:
    """Requests/s ``wrk`` gets from ``url`` with ``script`` (its summary line; for servers that are not ours)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", script, url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"no Requests/sec line in wrk's output:\n{out}")


def fixed_server_alone(url: str, *, connections: int, seconds: float = 3.0) -> float:
    """Requests/s the fixed-answer server alone serves to wrk (POST): shown before a run, so that its figures are
    seen not to be the server's limit."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\nwrk.body = \'{"SerialNo": "5000:1"}\'\n')
    try:
        return wrk_plain(url, script.name, seconds=seconds, connections=connections)
    finally:
        Path(script.name).unlink()
