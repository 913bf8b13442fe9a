#!/usr/bin/env python3
"""Helpers for bench/run.sh: config generation, output parsing, probes, report.

Subcommands (all called by run.sh; see `bench.py -h`):
  gen DIR               write every nginx/weir config into DIR
  cpu PID...            print utime+stime ticks summed over the PIDs
  rss PID...            print VmRSS (KiB) summed over the PIDs
  wrk-record ...        parse one wrk run (with bench/wrk-report.lua) into a JSON line
  h2-record ...         parse one h2load run (+ its --log-file) into a JSON line
  wait-ready URL        poll until 200; print ms since --since (unix seconds)
  idle-conns ...        open N keep-alive connections, one request each, hold them
  head PORT [-H ...]    one GET; print the response head (run.sh: what each proxy answers)
  redis-commands PORT   print redis-server's total_commands_processed (scenario lr)
  probe ...             marker prober: propagation delay of endpoint changes
  report ...            write docs/performance.md from a results directory (report.py)
"""

import argparse
import json
import os
import socket
import sys
import time

# --------------------------------------------------------------------------
# Ports (all on 127.0.0.1)
BACKEND_PORTS = list(range(18100, 18200))  # backend nginx; 100 "pods"
MARKER_PORTS = [18198, 18199]
NGINX_PORT, NGINX_TLS = 18080, 18443
WEIR_PORT, WEIR_TLS, WEIR_CONTROL = 19080, 19443, 19090
# weir on scenario (a)'s config, run alongside (b) and (c) so their "within 5%
# of (a)" ratios come from runs that alternate, not from minutes apart.
WEIR_AREF_PORT, WEIR_AREF_CONTROL = 19082, 19092
WEIR_DEFAULT_PORT, WEIR_DEFAULT_CONTROL = 19081, 19091
FAKE_API_C, FAKE_API_SCALE = 17000, 17001
B_HOSTS, B_PATHS = 100, 10  # scenario b: 100 hosts x 10 paths = 1,000 routes
B_HOST, B_PATH = "h50.bench.test", "/api/p5/x"  # a route in the middle
SCALE_SERVICES, SCALE_ENDPOINTS = 10_000, 10

# weir's throughput scenarios run with `gateway.busy_poll_us` (adaptive busy
# polling, off by default in weir) as a deployment on a dedicated core would;
# scenario a0 repeats (a) with weir's defaults to show what it is worth.
# Scenario acap repeats a0 with each proxy held to part of a core by a CFS
# quota (run.sh: CAP_PCT): then the proxy, not the shared load-generator
# core, bounds req/s.
BUSY_POLL_US = int(os.environ.get("BENCH_BUSY_POLL_US", "200"))

SCENARIOS = {
    # id: (title, path, host header or None, tool)
    "a": ("one route, static upstream", "/", None, "wrk"),
    "a0": ("as (a), weir without busy polling (its default)", "/", None, "wrk"),
    "acap": ("as (a0), each proxy held to half a core (CFS quota)", "/", None, "wrk"),
    "b": ("1,000 routes (100 hosts x 10 paths)", B_PATH, B_HOST, "wrk"),
    "c": ("k8s discovery, 100 endpoints, access log on", "/", None, "wrk"),
    "d16k": ("16 KiB response body", "/16k", None, "wrk"),
    "d1m": ("1 MiB response body", "/1m", None, "wrk"),
    "e": ("HTTPS termination (TLS 1.3, keep-alive)", "/", None, "wrk"),
    "f": ("HTTP/2 h2c downstream (h2load -c64 -m10)", "/", None, "h2load"),
    "p": ("one route with key-auth, ip-restriction, request-id, cors (as a0)", "/", None, "wrk"),
    "pcap": ("as (p), each proxy held to half a core (CFS quota)", "/", None, "wrk"),
    "jhs": ("jwt-auth, HS256 token (as a0; weir only)", "/", None, "wrk"),
    "jrs": ("jwt-auth, RS256 token (as a0; weir only)", "/", None, "wrk"),
    "lc": ("limit-count (local) + prometheus, APISIX's benchmark route (as a0; weir only)", "/", None, "wrk"),
    "lr": ("as (lc), limit-count with policy redis (local redis-server; weir only)", "/", None, "wrk"),
    "lq": ("one route with limit-req (as a0)", "/", None, "wrk"),
    "lqcap": ("as (lq), each proxy held to half a core (CFS quota)", "/", None, "wrk"),
    "u": ("chunked upload: POST, 16,000-byte body in 4 chunks (as a0)", "/", None, "wrk"),
}
# Scenarios nginx does not run: it has no JWT verification without njs or a
# third-party module, and lc / lr measure weir's plugins against weir
# without them (APISIX's benchmark route). They alternate with weir on a0's
# config instead.
WEIR_ONLY = ("jhs", "jrs", "lc", "lr")
# Scenarios that alternate with a second weir on a0's config (port
# WEIR_AREF_PORT), so that the cost of the plugins per request is a
# difference between runs taken in turns.
A0_REF = ("p", "jhs", "jrs", "lc", "lr")

# Plugin scenarios: the credentials wrk sends. The consumer's API key, the
# Origin the cors plugin allows, and the jwt-auth consumers' key claims.
P_APIKEY = "bench-3f9c1e7a52d84b06"
P_ORIGIN = "http://app.bench.test"
JWT_HS_KEY, JWT_HS_SECRET = "bench-hs", "bench-hs256-secret-0123456789abcdef"
JWT_RS_KEY = "bench-rs"

# Rate-limit scenarios: limits that never refuse during a run, so that every
# request does the limiter's work and passes. lc / lr: APISIX's own benchmark
# route (its benchmark/run.sh: limit-count count 999999999 per 60 s by
# remote_addr, rejected_code 503, and prometheus). lq: limit-req at a rate
# far above what the machine does; the burst (the same in weir and nginx)
# covers requests that arrive within one clock tick: nginx's leaky bucket
# counts time in whole milliseconds and refuses a second request in the same
# millisecond when the burst is 0, whatever the rate. With 64 connections at
# most 64 requests are ever in flight, so 1000 never fills.
LC_COUNT, LC_WINDOW = 999_999_999, 60
LQ_RATE, LQ_BURST = 10_000_000, 1000
# lr's redis-server (run.sh starts it on a free port and passes the port to
# `gen`; the configs must hold a port even when lr does not run).
REDIS_PORT_DEFAULT = 6379


def w(path, text):
    with open(path, "w") as f:
        f.write(text)


# --------------------------------------------------------------------------
# Config generation

NGINX_COMMON = """\
worker_processes 1;
daemon off;
master_process on;
pid {dir}/{name}.pid;
error_log {dir}/{name}.error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 30000; }}
"""

HTTP_COMMON = """\
    client_body_temp_path {dir}/tmp-{name}/body;
    proxy_temp_path {dir}/tmp-{name}/proxy;
    fastcgi_temp_path {dir}/tmp-{name}/fastcgi;
    uwsgi_temp_path {dir}/tmp-{name}/uwsgi;
    scgi_temp_path {dir}/tmp-{name}/scgi;
    default_type text/plain;
"""

# The same request to the node as weir sends: weir adds the forwarding
# fields APISIX adds (X-Forwarded-For/-Proto/-Host/-Port, X-Real-IP), so
# nginx does too. Without them nginx would send the backend a shorter head
# (less for nginx to build, less for the backend, which shares the load
# generator's core, to parse) than weir does.
PROXY_LOCATION = """\
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Port $server_port;
"""

NGINX_LOG_FORMAT = (
    "    log_format weir '$remote_addr - $remote_user [$time_local] \"$request\" "
    "$status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" host=$host "
    "rt=$request_time upstream=$upstream_addr ustatus=$upstream_status "
    "urt=$upstream_response_time route=c';\n"
)


def nginx_backend(d):
    listens = "".join(f"        listen 127.0.0.1:{p} reuseport backlog=4096;\n" for p in BACKEND_PORTS)
    return (
        NGINX_COMMON.format(dir=d, name="backend")
        + "http {\n"
        + HTTP_COMMON.format(dir=d, name="backend")
        + f"""\
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    sendfile on;
    tcp_nopush on;
    server {{
{listens}        location = / {{ return 200 "hello world\\n"; }}
        location = /marker {{ return 200 "$server_port\\n"; }}
        location = /16k {{ alias {d}/www/16k.bin; }}
        location = /1m {{ alias {d}/www/1m.bin; }}
        location / {{ return 200 "hello world\\n"; }}
    }}
}}
"""
    )


# Scenario p's nginx: what weir's four plugins do, in nginx's own terms.
# key-auth: a `map` from the API key to the consumer's name, 401 when none
# (server-level `if` + `return`, nginx's rewrite phase, as key-auth runs in
# weir's rewrite phase), the consumer's name sent upstream as weir sends
# X-Consumer-Username (and the two fields weir removes, removed);
# ip-restriction: `allow`/`deny` (access phase); request-id: a client's
# X-Request-Id kept, else nginx's $request_id, upstream and in the response;
# cors: the fields weir sets for an allowed Origin, on every response
# (`always`, as weir sets them on its own answers too).
NGINX_P_HTTP = """\
    map $http_apikey $bench_consumer {{
        default "";
        "{key}" bench;
    }}
    map $http_x_request_id $bench_request_id {{
        default $http_x_request_id;
        "" $request_id;
    }}
"""

NGINX_P_SERVER = """\
        if ($bench_consumer = "") {{
            return 401 '{{"message":"Invalid API key in request"}}\\n';
        }}
"""

NGINX_P_LOCATION = """\
            allow 127.0.0.0/8;
            deny all;
            add_header X-Request-Id $bench_request_id always;
            add_header Access-Control-Allow-Origin "{origin}" always;
            add_header Access-Control-Allow-Methods "*" always;
            add_header Access-Control-Max-Age 5 always;
            add_header Access-Control-Allow-Headers "*" always;
            add_header Vary Origin always;
            proxy_set_header X-Request-Id $bench_request_id;
            proxy_set_header X-Consumer-Username $bench_consumer;
            proxy_set_header X-Credential-Identifier "";
            proxy_set_header X-Consumer-Custom-ID "";
"""

# Scenario lq's nginx: limit_req keyed by the client address (wrk's one
# address, so one bucket for every request, as the weir route's
# `key: remote_addr`), the same rate and burst, nodelay.
NGINX_LQ_HTTP = f"    limit_req_zone $binary_remote_addr zone=bench:10m rate={LQ_RATE}r/s;\n"
NGINX_LQ_LOCATION = f"            limit_req zone=bench burst={LQ_BURST} nodelay;\n"
# u (chunked upload): nginx streams the request body to the backend as weir
# does (chunked, HTTP/1.1) instead of its default, which buffers each body
# (to a temporary file once it outgrows client_body_buffer_size) and sends
# it with a Content-Length: 2.9k req/s with a 40 ms p99 here, which compares
# nothing.
NGINX_U_LOCATION = "            proxy_request_buffering off;\n"


def nginx_proxy(d, scn):
    name = f"nginx-{scn}"
    ka = 64
    nodes = [BACKEND_PORTS[0]]
    log = "    access_log off;\n"
    if scn == "c":
        nodes = BACKEND_PORTS
        # 64 idle connections shared by 100 nodes would make nginx reconnect
        # on most requests; let it keep some per node, as weir does.
        ka = 1024
        log = NGINX_LOG_FORMAT + f"    access_log {d}/nginx-c.access.log weir;\n"
    servers_up = "".join(f"        server 127.0.0.1:{p};\n" for p in nodes)
    http = (
        HTTP_COMMON.format(dir=d, name=name)
        + log
        + "    keepalive_requests 10000000;\n    keepalive_timeout 300s;\n"
        + f"    upstream backend {{\n{servers_up}        keepalive {ka};\n    }}\n"
    )
    if scn == "b":
        http += "    server_names_hash_bucket_size 128;\n    server_names_hash_max_size 4096;\n"
        for h in range(B_HOSTS):
            locs = "".join(
                f"        location /api/p{p}/ {{\n" + PROXY_LOCATION.format(upstream="backend") + "        }\n"
                for p in range(B_PATHS)
            )
            http += f"    server {{\n        listen 127.0.0.1:{NGINX_PORT};\n        server_name h{h}.bench.test;\n{locs}    }}\n"
    else:
        if scn == "e":
            listen = (
                f"        listen 127.0.0.1:{NGINX_TLS} ssl;\n"
                f"        ssl_certificate {d}/cert.pem;\n        ssl_certificate_key {d}/key.pem;\n"
            )
        elif scn == "f":
            listen = f"        listen 127.0.0.1:{NGINX_PORT} http2;\n"
        else:
            listen = f"        listen 127.0.0.1:{NGINX_PORT} backlog=4096;\n"
        server_extra = location_extra = ""
        if scn == "p":
            http += NGINX_P_HTTP.format(key=P_APIKEY)
            server_extra = NGINX_P_SERVER.format()
            location_extra = NGINX_P_LOCATION.format(origin=P_ORIGIN)
        if scn == "lq":
            http += NGINX_LQ_HTTP
            location_extra = NGINX_LQ_LOCATION
        if scn == "u":
            location_extra = NGINX_U_LOCATION
        http += (
            f"    server {{\n{listen}{server_extra}        location / {{\n"
            + location_extra
            + PROXY_LOCATION.format(upstream="backend")
            + "        }\n    }\n"
        )
    return NGINX_COMMON.format(dir=d, name=name) + "http {\n" + http + "}\n"


def weir_gateway(scn, d, access_log=False, tls=False, workers=1, busy_poll=False):
    lines = ["gateway:", f"  workers: {workers}" if workers else None, "  listeners:"]
    if tls:
        lines.append(f"    - {{address: 127.0.0.1:{WEIR_TLS}, tls: true}}")
    else:
        lines.append(f"    - {{address: 127.0.0.1:{WEIR_PORT}}}")
    lines.append(f"  control: {{address: 127.0.0.1:{WEIR_CONTROL}}}")
    if access_log:
        lines.append(f"  access_log: {{enabled: true, path: {d}/weir-{scn}.access.log, format: text}}")
    else:
        lines.append("  access_log: {enabled: false}")
    if busy_poll and BUSY_POLL_US and workers:
        lines.append(f"  busy_poll_us: {BUSY_POLL_US}")
    return "\n".join(x for x in lines if x is not None) + "\n"


def weir_config(d, scn, busy_poll=True, redis_port=REDIS_PORT_DEFAULT):
    backend = f'"127.0.0.1:{BACKEND_PORTS[0]}": 1'
    if scn == "b":
        out = weir_gateway(scn, d, busy_poll=busy_poll)
        out += f"upstreams:\n  - {{id: backend, type: roundrobin, nodes: {{{backend}}}}}\nroutes:\n"
        for h in range(B_HOSTS):
            for p in range(B_PATHS):
                out += f"  - {{id: r{h}-{p}, host: h{h}.bench.test, uri: /api/p{p}/*, upstream_id: backend}}\n"
        return out
    if scn == "c":
        out = weir_gateway(scn, d, access_log=True, busy_poll=busy_poll)
        out += discovery_block(FAKE_API_C)
        out += (
            "routes:\n  - id: c\n    uri: /*\n    upstream: {type: roundrobin, "
            "discovery_type: kubernetes, service_name: bench/svc-0:http}\n"
        )
        return out
    if scn == "e":
        out = weir_gateway(scn, d, tls=True, busy_poll=busy_poll)
        out += f"ssls:\n  - {{id: bench, snis: [localhost, bench.test], cert_file: {d}/cert.pem, key_file: {d}/key.pem}}\n"
    else:
        out = weir_gateway(scn, d, busy_poll=busy_poll)
    rid = scn if scn in ("p", "jhs", "jrs", "lc", "lr", "lq") else "a"
    out += f"routes:\n  - id: {rid}\n    uri: /*\n    upstream: {{type: roundrobin, nodes: {{{backend}}}}}\n"
    if scn == "p":
        out += (
            "    plugins:\n"
            "      key-auth: {}\n"
            "      ip-restriction: {whitelist: [127.0.0.0/8]}\n"
            "      request-id: {}\n"
            f'      cors: {{allow_origins: "{P_ORIGIN}"}}\n'
            "consumers:\n"
            f"  - {{username: bench, plugins: {{key-auth: {{key: {P_APIKEY}}}}}}}\n"
        )
    elif scn == "jhs":
        out += (
            "    plugins:\n      jwt-auth: {}\nconsumers:\n"
            f"  - {{username: bench, plugins: {{jwt-auth: {{key: {JWT_HS_KEY}, secret: {JWT_HS_SECRET}}}}}}}\n"
        )
    elif scn == "jrs":
        pem = open(f"{d}/jwt-rs.pub.pem").read().strip()
        out += (
            "    plugins:\n      jwt-auth: {}\nconsumers:\n  - username: bench\n    plugins:\n"
            f"      jwt-auth:\n        key: {JWT_RS_KEY}\n        algorithm: RS256\n        public_key: |\n"
            + "".join(f"          {line}\n" for line in pem.splitlines())
        )
    elif scn in ("lc", "lr"):
        out += (
            "    plugins:\n      limit-count:\n"
            f"        count: {LC_COUNT}\n        time_window: {LC_WINDOW}\n"
            "        key: remote_addr\n        rejected_code: 503\n"
        )
        if scn == "lr":
            out += f"        policy: redis\n        redis_host: 127.0.0.1\n        redis_port: {redis_port}\n"
        out += "      prometheus: {}\n"
    elif scn == "lq":
        out += (
            "    plugins:\n"
            f"      limit-req: {{rate: {LQ_RATE}, burst: {LQ_BURST}, key: remote_addr, nodelay: true}}\n"
        )
    return out


def b64url(data):
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_tokens(d):
    """An RSA key pair (openssl, into DIR) and one valid token per jwt-auth
    scenario: {"jhs": HS256 token, "jrs": RS256 token}. Both carry `exp` a
    day ahead, so weir checks it as it would a real token's."""
    import hashlib
    import hmac
    import subprocess

    key, pub = f"{d}/jwt-rs.key.pem", f"{d}/jwt-rs.pub.pem"
    if not os.path.exists(key):
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key],
            check=True,
            capture_output=True,
        )
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
    exp = int(time.time()) + 86400

    def signing_input(alg, key_claim):
        head = b64url(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
        body = b64url(json.dumps({"key": key_claim, "exp": exp}, separators=(",", ":")).encode())
        return f"{head}.{body}"

    hs = signing_input("HS256", JWT_HS_KEY)
    hs += "." + b64url(hmac.new(JWT_HS_SECRET.encode(), hs.encode(), hashlib.sha256).digest())
    rs = signing_input("RS256", JWT_RS_KEY)
    sig = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", key], input=rs.encode(), check=True, capture_output=True
    ).stdout
    rs += "." + b64url(sig)
    return {"jhs": hs, "jrs": rs}


def request_headers(scn, d):
    """The header fields wrk (and the idle-connection client) send in a
    scenario, as `Name: value` strings."""
    if scn == "b":
        return [f"Host: {B_HOST}"]
    if scn in ("p", "pcap", "gp"):
        return [f"apikey: {P_APIKEY}", f"Origin: {P_ORIGIN}"]
    if scn in ("jhs", "jrs"):
        return ["Authorization: Bearer " + open(f"{d}/jwt-{scn}.token").read().strip()]
    return []


def discovery_block(port):
    return (
        "discovery:\n  kubernetes:\n"
        f'    service: {{schema: http, host: "127.0.0.1", port: {port}}}\n'
        "    client: {token: test-token}\n"
    )


def weir_scale(d, routes):
    out = weir_gateway("scale", d)
    out += discovery_block(FAKE_API_SCALE)
    out += "routes:\n"
    out += (
        "  - {id: marker, host: marker.scale.test, uri: /*, upstream: "
        "{discovery_type: kubernetes, service_name: bench/marker:http}}\n"
    )
    for i in range(routes):
        out += (
            f"  - {{id: s{i}, host: s{i}.scale.test, uri: /*, upstream: "
            f"{{discovery_type: kubernetes, service_name: bench/svc-{i}:http}}}}\n"
        )
    return out


def weir_default(repo, d):
    # The embedded default (crates/weir-config/src/default.yaml) on other
    # ports, access log to stdout (run.sh sends stdout to /dev/null).
    src = open(os.path.join(repo, "crates/weir-config/src/default.yaml")).read()
    src = src.replace("127.0.0.1:9080", f"127.0.0.1:{WEIR_DEFAULT_PORT}")
    src = src.replace("127.0.0.1:9090", f"127.0.0.1:{WEIR_DEFAULT_CONTROL}")
    return src


def cmd_gen(a):
    d = os.path.abspath(a.dir)
    os.makedirs(f"{d}/www", exist_ok=True)
    with open(f"{d}/www/16k.bin", "wb") as f:
        f.write(b"x" * 16384)
    with open(f"{d}/www/1m.bin", "wb") as f:
        f.write(b"x" * 1048576)
    # nginx workers run as `nobody` when started as root: everything they
    # read must be world-readable, and nginx itself creates (and chowns) the
    # temp directories inside tmp-<name>.
    os.chmod(d, 0o755)
    os.chmod(f"{d}/www", 0o755)
    idle = ["g", "g2", "gp"]
    for name in ["backend"] + [f"nginx-{s}" for s in list(SCENARIOS) + idle if s not in WEIR_ONLY]:
        os.makedirs(f"{d}/tmp-{name}", mode=0o755, exist_ok=True)
    w(f"{d}/backend.conf", nginx_backend(d))
    for scn, token in jwt_tokens(d).items():
        w(f"{d}/jwt-{scn}.token", token + "\n")
    # g / g2 / gp: idle HTTP/1.1 / HTTP/2 (h2c) / HTTP/1.1 on (p)'s route
    # weir without busy polling
    defaults = ("a0", "acap", "g", "g2", "p", "pcap", "gp", "jhs", "jrs", "lc", "lr", "lq", "lqcap", "u")
    for scn in list(SCENARIOS) + idle:
        base = {
            "a0": "a", "acap": "a", "d16k": "a", "d1m": "a", "g": "a", "g2": "f", "pcap": "p", "gp": "p", "lqcap": "lq",
        }.get(scn, scn)
        if scn not in WEIR_ONLY:
            w(f"{d}/nginx-{scn}.conf", nginx_proxy(d, base).replace(f"nginx-{base}", f"nginx-{scn}"))
        base = {"u": "a"}.get(scn, base)
        w(f"{d}/weir-{scn}.yaml", weir_config(d, base, busy_poll=scn not in defaults, redis_port=a.redis_port))
    # Second weirs for alternating runs: (a)'s config beside (b) and (c),
    # a0's beside (p), (jhs) and (jrs).
    for ref, base, bp in [("aref", "a", True), ("a0ref", "a", False)]:
        cfg = weir_config(d, base, busy_poll=bp).replace(f"127.0.0.1:{WEIR_PORT}", f"127.0.0.1:{WEIR_AREF_PORT}")
        w(f"{d}/weir-{ref}.yaml", cfg.replace(f"127.0.0.1:{WEIR_CONTROL}", f"127.0.0.1:{WEIR_AREF_CONTROL}"))
    w(f"{d}/weir-scale.yaml", weir_scale(d, SCALE_SERVICES))
    w(f"{d}/weir-scale1.yaml", weir_scale(d, 1))
    w(f"{d}/weir-default.yaml", weir_default(a.repo, d))


# --------------------------------------------------------------------------
# /proc


def proc_ticks(pids):
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
            fields = s[s.rindex(")") + 2 :].split()
            t += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, ValueError):
            pass
    return t


def proc_rss(pids):
    kb = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        kb += int(line.split()[1])
        except OSError:
            pass
    return kb


def cmd_cpu(a):
    print(proc_ticks(a.pids))


def cmd_rss(a):
    print(proc_rss(a.pids))


# --------------------------------------------------------------------------
# Parsing runs


def loadavg():
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def common_record(a, secs):
    tck = os.sysconf("SC_CLK_TCK")
    cpu_s = (a.cpu_after - a.cpu_before) / tck
    return {
        "scenario": a.scenario,
        "target": a.target,
        "run": a.run,
        "proxy_cpu_pct": round(100.0 * cpu_s / secs, 1) if secs else None,
        "proxy_cpu_s": cpu_s,
        "rss_kb": a.rss_kb,
        "loadavg": a.loadavg or loadavg(),
        **host_deltas(a.host_before, a.host_after),
    }


def host_deltas(before, after):
    """Busy % of the load-generator and proxy cores and TCP segments sent over
    one run, from two run.sh `host_snapshot` lines (empty when none given)."""
    try:
        b = [int(x) for x in before.split()]
        e = [int(x) for x in after.split()]
    except ValueError:
        return {}
    if len(b) != 5 or len(e) != 5:
        return {}
    d = [y - x for x, y in zip(b, e)]
    return {
        "load_core_busy_pct": round(100.0 * d[0] / d[1], 1) if d[1] else None,
        "proxy_core_busy_pct": round(100.0 * d[2] / d[3], 1) if d[3] else None,
        "tcp_segs": d[4],
    }


def cmd_wrk_record(a):
    text = open(a.output).read()
    rec = {}
    for line in text.splitlines():
        if line.startswith("JSON "):
            rec = json.loads(line[5:])
    if not rec:
        print(f"no JSON line in {a.output}", file=sys.stderr)
        sys.exit(1)
    secs = rec["duration_us"] / 1e6
    out = common_record(a, secs)
    out.update(
        tool="wrk",
        rps=rec["requests"] / secs,
        p50_us=rec["p50"],
        p99_us=rec["p99"],
        p999_us=rec["p999"],
        max_us=rec["max"],
        requests=rec["requests"],
        errors={k: rec[k] for k in rec if k.startswith("errors_")},
        cpu_us_per_req=round(out["proxy_cpu_s"] * 1e6 / max(rec["requests"], 1), 2),
    )
    if "tcp_segs" in out:
        out["tcp_segs_per_req"] = round(out["tcp_segs"] / max(rec["requests"], 1), 3)
    with open(a.results, "a") as f:
        f.write(json.dumps(out) + "\n")
    print(fmt_run(out))


def pct(sorted_vals, p):
    if not sorted_vals:
        return 0
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def cmd_h2_record(a):
    text = open(a.output).read()
    secs = rps = None
    total = ok = failed = errored = timeout = 0
    non2xx = 0
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("finished in"):
            # finished in 10.00s, 123.45 req/s, 1.2MB/s
            parts = line.split(",")
            secs = float(parts[0].split()[-1].rstrip("s"))
            rps = float(parts[1].split()[0])
        elif line.startswith("requests:"):
            nums = [int(x) for x in line.replace(",", " ").split() if x.isdigit()]
            total, ok, failed, errored, timeout = nums[0], nums[3], nums[4], nums[5], nums[6]
        elif line.startswith("status codes:"):
            nums = [int(x) for x in line.replace(",", " ").split() if x.isdigit()]
            non2xx = sum(nums[1:])
    lat = []
    try:
        with open(a.log) as f:
            for line in f:
                p = line.split()
                if len(p) >= 3:
                    lat.append(int(p[2]))
    except OSError:
        pass
    lat.sort()
    secs = secs or a.secs
    out = common_record(a, secs)
    out.update(
        tool="h2load",
        rps=rps or 0.0,
        p50_us=pct(lat, 50),
        p99_us=pct(lat, 99),
        p999_us=pct(lat, 99.9),
        max_us=lat[-1] if lat else 0,
        requests=total,
        errors={"failed": failed, "errored": errored, "timeout": timeout, "non2xx": non2xx},
        cpu_us_per_req=round(out["proxy_cpu_s"] * 1e6 / max(ok, 1), 2),
    )
    if "tcp_segs" in out:
        out["tcp_segs_per_req"] = round(out["tcp_segs"] / max(ok, 1), 3)
    with open(a.results, "a") as f:
        f.write(json.dumps(out) + "\n")
    print(fmt_run(out))


def fmt_run(r):
    errs = {k: v for k, v in r["errors"].items() if v}
    return (
        f"  {r['scenario']:5} {r['target']:6} run {r['run']}: {r['rps']:10.0f} req/s  "
        f"p50 {ms(r['p50_us'])} p99 {ms(r['p99_us'])} p99.9 {ms(r['p999_us'])}  "
        f"cpu {r['proxy_cpu_pct']}%  rss {r['rss_kb'] / 1024:.1f} MiB  load {r['loadavg']}"
        + (f"  load-core {r['load_core_busy_pct']}%" if r.get("load_core_busy_pct") is not None else "")
        + (f"  segs/req {r['tcp_segs_per_req']}" if r.get("tcp_segs_per_req") is not None else "")
        + (f"  ERRORS {errs}" if errs else "")
    )


def ms(us):
    return f"{us / 1000:.2f}ms"


# --------------------------------------------------------------------------
# Probes


def http_get(host, port, path, hosthdr="bench", timeout=1.0):
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {hosthdr}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


def cmd_wait_ready(a):
    # a.url: host:port/path
    hostport, _, path = a.url.partition("/")
    host, _, port = hostport.rpartition(":")
    deadline = time.time() + a.timeout
    while time.time() < deadline:
        try:
            r = http_get(host, int(port), "/" + path, timeout=0.5)
            if r.startswith(b"HTTP/1.1 200") or r.startswith(b"HTTP/1.0 200"):
                print(f"{(time.time() - a.since) * 1000:.0f}" if a.since else "ok")
                return
        except OSError:
            pass
        time.sleep(a.interval)
    print("timeout", file=sys.stderr)
    sys.exit(1)


def h2_frame(ftype, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def h2_get(path):
    """Client preface, empty SETTINGS and one GET on stream 1 (HPACK without
    Huffman or indexing, so no encoder is needed)."""
    block = bytes([0x82, 0x86])  # :method GET, :scheme http
    block += bytes([0x84]) if path == "/" else bytes([0x04, len(path)]) + path.encode()
    block += bytes([0x01, 5]) + b"bench"  # :authority bench
    return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0) + h2_frame(1, 0x5, 1, block)


def h2_exchange(s, path):
    """One GET over HTTP/2 on socket `s`; True when stream 1 ended with :status 200."""
    s.sendall(h2_get(path))
    buf, status_ok = b"", False
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = s.recv(65536)
            if not chunk:
                return False
            buf += chunk
        n = int.from_bytes(buf[:3], "big")
        ftype, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        payload, buf = buf[9 : 9 + n], buf[9 + n :]
        if ftype == 4 and not flags & 1:
            s.sendall(h2_frame(4, 1, 0))  # acknowledge the server's SETTINGS
        if stream == 1 and ftype == 1:
            status_ok = payload[:1] == b"\x88"  # indexed :status 200
        if stream == 1 and ftype in (0, 1) and flags & 1:
            return status_ok
        if ftype == 7 or (stream == 1 and ftype == 3):  # GOAWAY, RST_STREAM
            return False


def cmd_idle_conns(a):
    """Open N connections, send one request on each, read the response, hold."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.n + 100
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    extra = "".join(h + "\r\n" for h in a.header)
    req = f"GET {a.path} HTTP/1.1\r\nHost: bench\r\n{extra}\r\n".encode()
    socks = []
    failed = 0
    t0 = time.time()
    for i in range(a.n):
        try:
            s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
            if a.h2:
                ok = h2_exchange(s, a.path)
            else:
                s.sendall(req)
                data = b""
                while b"\r\n\r\n" not in data or not data.endswith(b"hello world\n"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                ok = data.startswith(b"HTTP/1.1 200")
            if not ok:
                failed += 1
            socks.append(s)
        except OSError:
            failed += 1
    print(f"HELD {len(socks)} failed={failed} in {time.time() - t0:.1f}s", flush=True)
    time.sleep(a.hold)
    # How many did the server close while we held them?
    import select

    closed = 0
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN)
    ready = {fd for fd, _ in poller.poll(0)}
    for s in socks:
        if s.fileno() in ready:
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    closed += 1
            except OSError:
                closed += 1
    print(json.dumps({"opened": len(socks), "failed": failed, "closed_by_server": closed}), flush=True)
    for s in socks:
        s.close()


def cmd_head(a):
    """One GET with the given header fields; print the status line and the
    response's fields (run.sh records what each proxy answers in a
    scenario). Exit 1 unless the status is 200."""
    extra = "".join(h + "\r\n" for h in a.header)
    s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
    try:
        s.sendall(f"GET {a.path} HTTP/1.1\r\nHost: bench\r\n{extra}Connection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    # Fields that change with every response or say nothing of the proxy.
    skip = ("date:", "server:")
    print("\n".join("  " + l for l in head.split("\r\n") if not l.lower().startswith(skip)))
    sys.exit(0 if head.startswith("HTTP/1.1 200") else 1)


def cmd_redis_commands(a):
    """Print redis-server's `total_commands_processed` (INFO stats, over a
    plain socket: no redis-cli needed; the commands a Lua script runs count
    too); run.sh brackets scenario lr's runs with it to show that every
    request reached Redis. With --by-command: the calls of each command
    (INFO commandstats), `name=calls` on one line."""
    s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
    try:
        s.sendall(b"INFO commandstats\r\n" if a.by_command else b"INFO stats\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, _, rest = data.partition(b"\r\n")
            if head.startswith(b"$") and len(rest) >= int(head[1:]):
                break
    finally:
        s.close()
    lines = data.decode("latin-1").splitlines()
    if a.by_command:
        # cmdstat_evalsha:calls=3,usec=...
        calls = [l[8:].split(":", 1)[0] + "=" + l.split("calls=", 1)[1].split(",", 1)[0] for l in lines if l.startswith("cmdstat_")]
        print(" ".join(calls))
        return
    for line in lines:
        if line.startswith("total_commands_processed:"):
            print(line.split(":", 1)[1].strip())
            return
    sys.exit(1)


def cmd_headers(a):
    print("\n".join(request_headers(a.scenario, a.dir)))


def cmd_probe(a):
    """Poll the marker route as fast as one keep-alive connection allows; log
    (unix_ns, port) whenever the answering port changes."""
    import http.client

    end = time.time() + a.secs
    out = open(a.out, "w")
    last = None
    n = errors = 0
    conn = None
    while time.time() < end:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=2)
            conn.request("GET", "/marker", headers={"Host": a.host})
            r = conn.getresponse()
            body = r.read().strip().decode()
            n += 1
            if r.status != 200:
                errors += 1
                continue
            if body != last:
                out.write(f"{time.time_ns()} {body}\n")
                out.flush()
                last = body
        except (OSError, http.client.HTTPException):
            errors += 1
            conn = None
            time.sleep(0.01)
    print(json.dumps({"probes": n, "probe_errors": errors}))


def propagation(events_file, probe_file):
    """For each marker change (emit_ns, port), the first probe observation of
    that port after the emit time; returns delays in ms."""
    ev = [tuple(map(int, l.split())) for l in open(events_file) if l.strip()]
    ob = [tuple(map(int, l.split())) for l in open(probe_file) if l.strip()]
    delays, missed = [], 0
    for i, (t, port) in enumerate(ev):
        nxt = ev[i + 1][0] if i + 1 < len(ev) else None
        seen = [ts for ts, p in ob if p == port and ts >= t and (nxt is None or ts < nxt)]
        if seen:
            delays.append((seen[0] - t) / 1e6)
        else:
            missed += 1
    return delays, missed


# --------------------------------------------------------------------------


def cmd_report(a):
    import report  # bench/report.py; imported here because it imports this module

    report.cmd_report(a)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("gen")
    p.add_argument("dir")
    p.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p.add_argument("--redis-port", type=int, default=REDIS_PORT_DEFAULT, help="scenario lr's redis-server")
    p.set_defaults(f=cmd_gen)
    p = sub.add_parser("cpu")
    p.add_argument("pids", nargs="+")
    p.set_defaults(f=cmd_cpu)
    p = sub.add_parser("rss")
    p.add_argument("pids", nargs="+")
    p.set_defaults(f=cmd_rss)
    for name, fn in [("wrk-record", cmd_wrk_record), ("h2-record", cmd_h2_record)]:
        p = sub.add_parser(name)
        p.add_argument("--scenario", required=True)
        p.add_argument("--target", required=True)
        p.add_argument("--run", type=int, default=1)
        p.add_argument("--output", required=True)
        p.add_argument("--log", default="")
        p.add_argument("--secs", type=float, default=0)
        p.add_argument("--cpu-before", type=int, required=True)
        p.add_argument("--cpu-after", type=int, required=True)
        p.add_argument("--rss-kb", type=int, required=True)
        p.add_argument("--loadavg", default="")
        p.add_argument("--host-before", default="")
        p.add_argument("--host-after", default="")
        p.add_argument("--results", required=True)
        p.set_defaults(f=fn)
    p = sub.add_parser("wait-ready")
    p.add_argument("url")
    p.add_argument("--since", type=float, default=0)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--interval", type=float, default=0.005)
    p.set_defaults(f=cmd_wait_ready)
    p = sub.add_parser("idle-conns")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--path", default="/")
    p.add_argument("--hold", type=float, default=5)
    p.add_argument("--h2", action="store_true", help="HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1")
    p.add_argument("-H", "--header", action="append", default=[], help="extra request field, `Name: value`")
    p.set_defaults(f=cmd_idle_conns)
    p = sub.add_parser("head")
    p.add_argument("port", type=int)
    p.add_argument("--path", default="/")
    p.add_argument("-H", "--header", action="append", default=[], help="extra request field, `Name: value`")
    p.set_defaults(f=cmd_head)
    p = sub.add_parser("headers", help="the request fields of a scenario, one a line")
    p.add_argument("scenario")
    p.add_argument("dir")
    p.set_defaults(f=cmd_headers)
    p = sub.add_parser("redis-commands", help="redis-server's total_commands_processed")
    p.add_argument("port", type=int)
    p.add_argument("--by-command", action="store_true", help="calls per command (INFO commandstats)")
    p.set_defaults(f=cmd_redis_commands)
    p = sub.add_parser("probe")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--secs", type=float, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(f=cmd_probe)
    p = sub.add_parser("propagation")
    p.add_argument("events")
    p.add_argument("probe")
    p.set_defaults(f=lambda a: print(json.dumps(dict(zip(["delays_ms", "missed"], propagation(a.events, a.probe))))))
    p = sub.add_parser("report")
    p.add_argument("--results-dir", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(f=cmd_report)
    a = ap.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()
