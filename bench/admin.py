#!/usr/bin/env python3
"""Admin API benchmarks for bench/run.sh (scenario `admin`).

Subcommands:
  propagation   write N routes through the Admin API, one at a time; for each,
                time from sending the PUT to the proxy's first answer from the
                new route (polling one keep-alive connection); print JSON
  seed-etcd     write N routes straight into etcd (APISIX's layout, v3 JSON
                gateway), in transactions of 100 puts

The probe uses raw sockets (one keep-alive connection to the Admin API, one
to the proxy) so its own overhead stays in microseconds.
"""

import argparse
import base64
import json
import socket
import sys
import time


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(s, buf=b""):
    """Reads one HTTP/1.1 response with Content-Length or chunked body;
    returns (status, body, leftover)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before a response head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if b"content-length" in headers:
        n = int(headers[b"content-length"])
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed inside a body")
            rest += chunk
        return status, rest[:n], rest[n:]
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += s.recv(65536)
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += s.recv(65536)
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                return status, body, rest
    return status, rest, b""


def request(s, method, path, host="bench", headers=(), body=None):
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    for h in headers:
        head += h + "\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    s.sendall(head.encode() + b"\r\n" + data)


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, round(p / 100 * (len(sorted_vals) - 1))))
    return sorted_vals[i]


def cmd_propagation(a):
    admin = connect(a.admin_port)
    proxy = connect(a.proxy_port)
    key = f"X-API-KEY: {a.key}"
    acks, delays, polls = [], [], []
    deadline_s = a.timeout
    for i in range(a.first, a.first + a.count):
        rid = f"prop{i}"
        path = f"/prop/{i}"
        route = {"uri": path, "upstream": {"type": "roundrobin",
                                           "nodes": {a.upstream: 1}}}
        t0 = time.perf_counter()
        request(admin, "PUT", f"/apisix/admin/routes/{rid}", headers=[key], body=route)
        status, body, _ = read_response(admin)
        t_ack = time.perf_counter()
        if status not in (200, 201):
            print(f"PUT {rid}: {status} {body[:200]!r}", file=sys.stderr)
            sys.exit(1)
        n = 0
        while True:
            n += 1
            request(proxy, "GET", path)
            pstatus, _, _ = read_response(proxy)
            if pstatus != 404:
                break
            if time.perf_counter() - t0 > deadline_s:
                print(f"route {rid} not served within {deadline_s}s", file=sys.stderr)
                sys.exit(1)
        t1 = time.perf_counter()
        acks.append((t_ack - t0) * 1e3)
        delays.append((t1 - t0) * 1e3)
        polls.append(n)
    if a.cleanup:
        for i in range(a.first, a.first + a.count):
            request(admin, "DELETE", f"/apisix/admin/routes/prop{i}", headers=[key])
            read_response(admin)
    delays.sort()
    acks.sort()
    out = {
        "n": len(delays),
        "ack_ms": {"p50": pct(acks, 50), "p99": pct(acks, 99), "max": acks[-1]},
        "live_ms": {"p50": pct(delays, 50), "p90": pct(delays, 90),
                    "p99": pct(delays, 99), "max": delays[-1]},
        "polls_max": max(polls),
        "first_poll_served": sum(1 for n in polls if n == 1),
    }
    print(json.dumps(out))


def b64(s):
    return base64.b64encode(s.encode()).decode()


def cmd_seed_etcd(a):
    s = connect(a.etcd_port)
    batch = []

    def flush():
        if not batch:
            return
        request(s, "POST", "/v3/kv/txn", host=f"127.0.0.1:{a.etcd_port}",
                body={"success": batch})
        status, body, _ = read_response(s)
        if status != 200:
            print(f"etcd txn: {status} {body[:300]!r}", file=sys.stderr)
            sys.exit(1)
        batch.clear()

    for i in range(a.routes):
        route = {"id": f"r{i}", "uri": f"/api/r{i}/*", "host": f"h{i % 100}.seed.test",
                 "upstream": {"type": "roundrobin", "nodes": {a.upstream: 1}}}
        batch.append({"request_put": {"key": b64(f"{a.prefix}/routes/r{i}"),
                                      "value": b64(json.dumps(route))}})
        if len(batch) == 100:  # etcd's default --max-txn-ops is 128
            flush()
    flush()
    print(json.dumps({"seeded": a.routes}))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("propagation")
    pr.add_argument("--admin-port", type=int, required=True)
    pr.add_argument("--proxy-port", type=int, required=True)
    pr.add_argument("--key", required=True)
    pr.add_argument("--upstream", required=True, help="host:port of a backend")
    pr.add_argument("--count", type=int, default=200)
    pr.add_argument("--first", type=int, default=0, help="the first route's number (prop<N>, /prop/<N>)")
    pr.add_argument("--timeout", type=float, default=5.0)
    pr.add_argument("--cleanup", action="store_true")
    se = sub.add_parser("seed-etcd")
    se.add_argument("--etcd-port", type=int, required=True)
    se.add_argument("--prefix", default="/apisix")
    se.add_argument("--routes", type=int, default=10_000)
    se.add_argument("--upstream", required=True)
    a = p.parse_args()
    {"propagation": cmd_propagation, "seed-etcd": cmd_seed_etcd}[a.cmd](a)


if __name__ == "__main__":
    main()
