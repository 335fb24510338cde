"""CPU per delivered report: our delivery draining a pre-filled outbox, beside bare HTTP loops, same nginx, same run.

    python benchmarks/report_cpu.py [--rows 5000] [--requests 3000] [--rounds 3] [--base REF] [--json PATH]

The server is Debian's nginx on loopback answering every POST with a fixed Tencent ``ReportConversion`` success
(``fixed_server.py``), so our side is what is measured; nginx alone is measured first (wrk), to show it is not
the bottleneck. Every figure is CPU time of the sending process (user + system, every thread) over the requests
that reached nginx (its access log counts them).

    delivery      an outbox of --rows verified sends (a real SQLite store, filled once through the extension and
                  copied per round) drained by one process: ``OTPConversion(app)`` with autostart off, then
                  ``conversion.flush()`` (the real Tencent client: signing, the store's claims and acks, HTTP).
                  Start-up is not counted, the flush is. The rate cap is lifted so the limiter's pauses are not
                  measured (drain at the documented cap: ``cap.py``).
    base          the same harness on another commit's code (--base REF, in a throw-away git worktree)
    client alone  the package's Tencent client reporting one after another: signing and HTTP, no store
    HTTPSender    the pre-signed request through the clients' sender on its own transport (StdlibTransport),
                  and "on httpcore": the same sender on httpx.HTTPTransport, the transport it replaced
    httpx.Client  a stock ``httpx.Client`` posting a pre-signed Tencent-shaped request in a loop
    http.client   the standard library's ``http.client`` doing the same: the floor of an HTTP POST in Python
    SDK           ``tencentcloud-sdk-python-sms`` reporting in a loop (if installed): a hand-written integration

Rounds alternate the variants, so each round's figures see the same machine; the medians and spread are over
rounds.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _harness as h
import _outbox
from fixed_server import FixedServer

BODY = b'{"SmsSdkAppId":"1400000000","SerialNo":"5000:00000000000000000000000000000001","ConversionTime":1700000000}'
#: What a signed ReportConversion carries (the signature is fixed: nginx checks nothing).
HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "X-TC-Action": "ReportConversion",
    "X-TC-Version": "2021-01-11",
    "X-TC-Timestamp": "1700000000",
    "Authorization": "TC3-HMAC-SHA256 Credential=AKIDbenchmark0000000000000000000000/2023-11-14/sms/tc3_request, "
    "SignedHeaders=content-type;host;x-tc-action, Signature=" + "0" * 64,
}


def cpu_per_request(server: FixedServer, send: Callable[[], None], count: int) -> dict[str, float]:
    """``send`` ``count`` times after a short warm-up: CPU ms per request that reached nginx, and req/s."""
    for _ in range(50):
        send()
    before = len(server.arrivals())
    cpu0, started = time.process_time(), time.perf_counter()
    for _ in range(count):
        send()
    cpu, seconds = time.process_time() - cpu0, time.perf_counter() - started
    arrived = len(server.arrivals()) - before
    return {"cpu_ms_per_request": cpu * 1000 / max(arrived, 1), "per_s": arrived / seconds, "arrived": arrived}


def http_client_loop(server: FixedServer) -> Callable[[], None]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    headers = {**HEADERS, "Host": f"127.0.0.1:{server.port}"}

    def send() -> None:
        conn.request("POST", "/", BODY, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"nginx answered {response.status}")

    return send


def httpx_loop(server: FixedServer) -> Callable[[], None]:
    import httpx

    client = httpx.Client()

    def send() -> None:
        client.post(server.url + "/", content=BODY, headers=HEADERS).raise_for_status()

    return send


def client_loop(server: FixedServer) -> Callable[[], None]:
    from flask_otp_conversion.providers.base import ConversionReport
    from flask_otp_conversion.providers.settings import TencentSettings
    from flask_otp_conversion.providers.tencent import TencentProvider

    settings = TencentSettings(
        **_outbox.FAKE_KEYS, endpoint=server.url, template_id="1110", sign_name="Example"
    )
    provider = TencentProvider.from_settings(settings)
    report = ConversionReport("5000:00000000000000000000000000000001", "+8613700000001", verified_at=time.time())

    def send() -> None:
        provider.report_conversion(report)

    return send


def sender_loop(server: FixedServer, *, httpcore: bool) -> Callable[[], None]:
    """The pre-signed request through ``HTTPSender``, on its own transport or on httpx's (httpcore)."""
    import httpx

    from flask_otp_conversion.providers._http import HTTPSender

    transport = httpx.HTTPTransport(retries=0) if httpcore else None
    sender = HTTPSender(timeout=httpx.Timeout(5.0), transport=transport)
    url = httpx.URL(server.url + "/")
    headers = [("Host", f"127.0.0.1:{server.port}"), *HEADERS.items()]

    def send() -> None:
        if sender.send(url, headers, BODY).status_code != 200:
            raise RuntimeError("nginx did not answer 200")

    return send


def sdk_loop(server: FixedServer) -> Callable[[], None] | None:
    try:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import models, sms_client
    except ImportError:
        return None
    keys = _outbox.FAKE_KEYS
    profile = HttpProfile(protocol="http", endpoint=f"127.0.0.1:{server.port}", reqMethod="POST", keepAlive=True)
    client = sms_client.SmsClient(
        credential.Credential(keys["secret_id"], keys["secret_key"]), "ap-singapore", ClientProfile(httpProfile=profile)
    )

    def send() -> None:
        request = models.ReportConversionRequest()
        request.SmsSdkAppId = keys["sdk_app_id"]
        request.SerialNo = "5000:00000000000000000000000000000001"
        request.ConversionTime = int(time.time())
        client.ReportConversion(request)

    return send


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000, help="outbox rows a delivery round drains (default 5000)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per loop round (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, variants alternated (default 3)")
    parser.add_argument("--base", help="also measure this commit's delivery (a git ref), in a throw-away worktree")
    parser.add_argument("--json", type=Path, help="write the figures to this file as JSON")
    args = parser.parse_args()
    figures: dict[str, Any] = {"setup": {"rows": args.rows, "requests": args.requests, "rounds": args.rounds}}
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="otp-bench-") as tmp, h.checkout(args.base) as base_root, FixedServer(
        log_arrivals=True
    ) as server:
        workdir = Path(tmp)
        figures["nginx_alone_req_per_s"] = round(h.fixed_server_alone(server.url, connections=32))
        print(f"nginx alone (wrk -c32): {figures['nginx_alone_req_per_s']:,} req/s")
        roots = {"delivery": h.ROOT, **({"base": base_root} if base_root else {})}
        figures["code"] = {name: h.commit_of(root) for name, root in roots.items()}
        templates = {}
        for name, root in roots.items():
            templates[name] = workdir / f"template-{name}"
            config = _outbox.app_config(server.url, templates[name])
            seconds = _outbox.fill(root, config, templates[name], args.rows)
            print(f"{name}: outbox of {args.rows:,} filled in {seconds:.1f} s ({figures['code'][name]})", flush=True)
        loops: dict[str, Callable[[], None]] = {
            "client alone": client_loop(server),
            "HTTPSender": sender_loop(server, httpcore=False),
            "HTTPSender on httpcore": sender_loop(server, httpcore=True),
            "httpx.Client": httpx_loop(server),
            "http.client": http_client_loop(server),
        }
        sdk = sdk_loop(server)
        if sdk is not None:
            loops["SDK"] = sdk
        else:
            print("SDK loop: not run (pip install tencentcloud-sdk-python-sms)")
        for r in range(args.rounds):
            for name, root in roots.items():
                instance = _outbox.copy(templates[name], workdir / f"{name}-{r}")
                config = _outbox.app_config(server.url, instance)
                before = len(server.arrivals())
                result = _outbox.drain(root, config, instance)
                arrived = len(server.arrivals()) - before
                one = {
                    "cpu_ms_per_request": result["cpu_s"] * 1000 / max(arrived, 1),
                    "per_s": arrived / result["seconds"],
                    "arrived": arrived,
                    "left": result["left"],
                }
                runs.setdefault(name, []).append(one)
                print(f"round {r + 1} {name:13s} {one['cpu_ms_per_request']:.3f} ms CPU/report  "
                      f"{one['per_s']:7,.0f} reports/s  ({arrived:,} arrived, {result['left']} left)", flush=True)
            for name, send in loops.items():
                one = cpu_per_request(server, send, args.requests)
                runs.setdefault(name, []).append(one)
                print(f"round {r + 1} {name:22s} {one['cpu_ms_per_request']:.3f} ms CPU/request "
                      f"{one['per_s']:7,.0f} req/s", flush=True)
    figures["variants"] = {
        name: {
            "cpu_ms": h.spread([m["cpu_ms_per_request"] for m in measured]),
            "per_s": h.spread([m["per_s"] for m in measured]),
            **({"left": [m["left"] for m in measured], "arrived": [m["arrived"] for m in measured]}
               if "left" in measured[0] else {}),
        }
        for name, measured in runs.items()
    }  # fmt: skip
    v = figures["variants"]
    floor, stock = v["http.client"]["cpu_ms"]["median"], v["httpx.Client"]["cpu_ms"]["median"]
    figures["ratios"] = {
        name: {"vs_http_client": round(m["cpu_ms"]["median"] / floor, 2),
               "vs_httpx_client": round(m["cpu_ms"]["median"] / stock, 2)}
        for name, m in v.items()
    }  # fmt: skip
    for name, m in v.items():
        c = m["cpu_ms"]
        print(f"{name:22s} {c['median']:.3f} ms CPU (±{c['spread_pct']:.1f} %)  "
              f"{figures['ratios'][name]['vs_http_client']:.2f}x http.client, "
              f"{figures['ratios'][name]['vs_httpx_client']:.2f}x httpx.Client")
    h.write_json(str(args.json) if args.json else None, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
