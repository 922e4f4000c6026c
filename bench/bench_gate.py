"""What the UI's gate (ui/gate.py) costs a request: the same small route served by
uvicorn on 127.0.0.1 with and without the gate in front, N keep-alive requests each
(alternating, so both see the same machine load); prints p50/p99 and their difference.
The issue's target: a p50 difference within 1 ms.

Run::

    python bench/bench_gate.py            # 3000 requests each
    python bench/bench_gate.py -n 10000
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from loupe.ui.gate import Gate, GateConfig

TOKEN = "bench-key-" + "x" * 33


async def _search(request):
    return JSONResponse({"hits": [{"id": f"{i:024x}", "score": 0.5} for i in range(20)]})


def _serve(app, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=3000, help="requests per server (3000)")
    args = ap.parse_args(argv)
    inner = Starlette(routes=[Route("/api/search", _search)])
    plain_port, gated_port = _free_port(), _free_port()
    gated = Gate(Starlette(routes=[Route("/api/search", _search)]),
                 GateConfig(frozenset({"127.0.0.1", "localhost", "::1"}), gated_port,
                            token=TOKEN))
    servers = [_serve(inner, plain_port), _serve(gated, gated_port)]
    headers = {"Cookie": f"loupe_key_{gated_port}={TOKEN}",
               "Origin": f"http://127.0.0.1:{gated_port}", "Sec-Fetch-Site": "same-origin"}
    conns = {p: http.client.HTTPConnection("127.0.0.1", p) for p in (plain_port, gated_port)}
    times: dict[int, list[float]] = {plain_port: [], gated_port: []}
    for i in range(args.n * 2 + 200):
        port = (plain_port, gated_port)[i % 2]
        h = dict(headers, Origin=f"http://127.0.0.1:{port}")
        t = time.perf_counter()
        conns[port].request("GET", "/api/search", headers=h)
        r = conns[port].getresponse()
        r.read()
        dt = time.perf_counter() - t
        assert r.status == 200, (port, r.status)
        if i >= 200:  # warm-up left out
            times[port].append(dt * 1000)
    for s in servers:
        s.should_exit = True

    def pct(xs: list[float], q: float) -> float:
        return sorted(xs)[int(q * (len(xs) - 1))]

    rows = [("without the gate", times[plain_port]), ("with the gate", times[gated_port])]
    print(f"{args.n} keep-alive GETs each, uvicorn on 127.0.0.1, one client thread")
    for label, xs in rows:
        print(f"  {label:<18} p50 {pct(xs, 0.5):6.3f} ms   p99 {pct(xs, 0.99):6.3f} ms   "
              f"mean {statistics.fmean(xs):6.3f} ms")
    d50 = pct(times[gated_port], 0.5) - pct(times[plain_port], 0.5)
    print(f"  p50 difference: {d50 * 1000:+.0f} us (target: within 1 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
