#!/usr/bin/env python3
"""docs/performance.md from a bench/run.sh results directory (`bench.py report`)."""

import json
import os
import re
import statistics

from bench import (
    A0_REF,
    BUSY_POLL_US,
    LC_COUNT,
    LC_WINDOW,
    LQ_BURST,
    LQ_RATE,
    P_ORIGIN,
    SCALE_ENDPOINTS,
    SCALE_SERVICES,
    SCENARIOS,
    WEIR_ONLY,
    fmt_run,
    ms,
    pct,
    w,
)


# A load-generator core this busy (%) under both proxies bounds req/s.
LOAD_BOUND_PCT = 97
# Targets of the plugin scenarios (issue: plugins on the fast path).
P_CPU_MAX = 1.10  # (p) weir CPU/request <= 1.10x the same route without plugins
PCAP_MIN = 1.10  # (pcap) weir req/s >= 1.10x nginx's, each held to half a core
# Targets of the rate-limit scenarios (issue 13: traffic policy).
LC_CPU_MAX = 1.15  # (lc) weir CPU/request <= 1.15x the same route without plugins
LQCAP_MIN = 1.10  # (lqcap) weir req/s >= 1.10x nginx's with limit_req, each held to half a core
GP_MAX = 1.10  # (gp) KiB per idle connection <= 1.10x (g)'s, same run
DRIFT_MAX = 0.03  # every earlier scenario within 3% of its last recorded ratio
# Idle-connection keys of idle.json: (scenario, weir's key, nginx's key, label)
IDLE = [
    ("g", "weir", "nginx", "HTTP/1.1 (g)"),
    ("g2", "weir-h2", "nginx-h2", "HTTP/2 (g2)"),
    ("gp", "weir-p", "nginx-p", "HTTP/1.1, plugin route (gp)"),
]
# The machine-readable record of every scenario's ratio, carried from one
# generated document to the next (scenarios not run keep their last value).
RATIOS_TAG = "bench-ratios:"


def median(xs):
    return statistics.median(xs) if xs else 0


def paired_ratio(results, scn, tgt, base):
    """Median over runs of tgt/base req/s, each run paired with the run of
    the same number (measured back to back): less sensitive to host drift
    than the ratio of medians, which the targets use."""
    by_run = {}
    for r in results:
        if r["scenario"] == scn and r["target"] in (tgt, base) and r["rps"]:
            by_run.setdefault(r["run"], {})[r["target"]] = r["rps"]
    ratios = [v[tgt] / v[base] for v in by_run.values() if tgt in v and base in v]
    return (median(ratios), len(ratios)) if ratios else (None, 0)


def median_of(rs, key):
    """Median of a field that older runs may lack (None when no run has it)."""
    xs = [r[key] for r in rs if r.get(key) is not None]
    return median(xs) if xs else None


def summarize(results):
    rows = {}
    for r in results:
        rows.setdefault((r["scenario"], r["target"]), []).append(r)
    summary = {}
    for key, rs in rows.items():
        summary[key] = {
            "n": len(rs),
            "rps": median([r["rps"] for r in rs]),
            "p50_us": median([r["p50_us"] for r in rs]),
            "p99_us": median([r["p99_us"] for r in rs]),
            "p999_us": median([r["p999_us"] for r in rs]),
            "cpu_pct": median([r["proxy_cpu_pct"] for r in rs]),
            "cpu_us_per_req": median([r["cpu_us_per_req"] for r in rs]),
            "rss_kb": median([r["rss_kb"] for r in rs]),
            "errors": sum(sum(r["errors"].values()) for r in rs),
            "rps_runs": [round(r["rps"]) for r in rs],
            "load_core_pct": median_of(rs, "load_core_busy_pct"),
            "segs_per_req": median_of(rs, "tcp_segs_per_req"),
        }
    return summary


def read_json(path, default=None):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return default


def pct_or_dash(v):
    return "-" if v is None else f"{v:.0f}%"


def verdict(ok):
    return "**met**" if ok else "**not met**"


def ratio_of(s, scn, base):
    """weir's req/s over `base`'s (nginx, or weir on a0's config) in one
    scenario; None when either is missing."""
    wv, bv = s.get((scn, "weir")), s.get((scn, base))
    return wv["rps"] / bv["rps"] if wv and bv and bv["rps"] else None


def current_ratios(s, idle, date):
    """This run's figure per scenario, as compared with later runs: weir's
    req/s over nginx's (over weir without plugins for the weir-only
    scenarios), weir's KiB per idle connection for the idle ones."""
    out = {}
    for scn in SCENARIOS:
        if scn in WEIR_ONLY:
            r, what = ratio_of(s, scn, "weir-a0"), "req/s, weir / weir without plugins"
        else:
            r, what = ratio_of(s, scn, "nginx"), "req/s, weir / nginx"
        if r:
            out[scn] = {"value": round(r, 4), "what": what, "date": date}
    for scn, wk, _, _ in IDLE:
        g = (idle or {}).get(wk)
        if g:
            out[scn] = {"value": round(g["per_conn_kb"], 3), "what": "weir KiB per idle connection", "date": date}
    return out


def previous_ratios(path, date):
    """The ratios recorded by the document about to be replaced: its
    `bench-ratios` comment, or for a document older than that comment, its
    results and idle tables. When that document came from the same run
    (`date`: the report is being regenerated), the ratios it compared with."""
    try:
        text = open(path).read()
    except OSError:
        return {}
    m = re.search(r"<!-- " + re.escape(RATIOS_TAG) + r" (\{.*?\}) -->", text, re.S)
    if m:
        try:
            rec = json.loads(m.group(1))
        except ValueError:
            rec = None
        if isinstance(rec, dict) and "ratios" in rec:
            return rec.get("before", {}) if rec.get("run") == date else rec["ratios"]
    d = re.search(r"^Generated (.+?) by ", text, re.M)
    date = d.group(1) if d else "?"
    rps, out = {}, {}
    for line in text.splitlines():
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) > 3 and c[1] in ("weir", "nginx", "weir-a0") and re.fullmatch(r"[\d,]+", c[2]):
            scn = c[0].split()[0]
            if scn in SCENARIOS:
                rps[(scn, c[1])] = float(c[2].replace(",", ""))
        for scn, wk, _, label in IDLE:
            if len(c) == 8 and c[0] == label and c[1] == "weir" and c[7].endswith(" KiB"):
                out[scn] = {"value": float(c[7].split()[0]), "what": "weir KiB per idle connection", "date": date}
    for scn in SCENARIOS:
        base = "weir-a0" if scn in WEIR_ONLY else "nginx"
        if (scn, "weir") in rps and rps.get((scn, base)):
            out[scn] = {
                "value": round(rps[(scn, "weir")] / rps[(scn, base)], 4),
                "what": "req/s, weir / " + ("weir without plugins" if scn in WEIR_ONLY else "nginx"),
                "date": date,
            }
    return out


def loadavg_summary(results):
    xs = []
    for r in results:
        try:
            xs.append(float(r.get("loadavg")))
        except (TypeError, ValueError):
            pass
    if not xs:
        return None
    return median(xs), min(xs), max(xs)


def cmd_report(a):
    rd = a.results_dir
    results = []
    if os.path.exists(f"{rd}/runs.jsonl"):
        results = [json.loads(l) for l in open(f"{rd}/runs.jsonl") if l.strip()]
    s = summarize(results)
    meta = read_json(f"{rd}/meta.json", {})
    idle = read_json(f"{rd}/idle.json")
    # Read before the document is replaced: the ratios it recorded.
    before = previous_ratios(a.out, meta.get("date", "?"))
    now = current_ratios(s, idle, meta.get("date", "?"))
    L = []
    L.append("# Performance\n")
    L.append(
        "<!-- GENERATED by bench/run.sh — do not edit by hand; re-run the suite. -->\n"
    )
    L.append(
        f"Generated {meta.get('date', '?')} by `{meta.get('command', 'bench/run.sh')}` "
        f"(mode **{meta.get('mode', '?')}**: {meta.get('runs', '?')} run(s) x {meta.get('secs', '?')} s "
        "per target and scenario"
        + (
            f", {meta['runs_headline']} for a, a0, acap, pcap and lqcap"
            if meta.get("runs_headline", meta.get("runs")) != meta.get("runs")
            else ""
        )
        + ", weir and nginx alternating; medians over runs).\n"
    )
    la = loadavg_summary(results)
    if la:
        L.append(
            f"Host load while measuring: 1-minute load average median {la[0]:.1f} (from {la[1]:.1f} to {la[2]:.1f}) "
            f"on {meta.get('nproc', '?')} CPUs"
            + (f"; {' / '.join(meta['loadavg_start'])} (1/5/15 min) when the suite started" if meta.get("loadavg_start") else "")
            + ". Anything above ~2 is other work (builds, tests) sharing the cores with the benchmark"
            + (
                f"; the suite ran at {meta['priority']}, so that work mostly waited.\n"
                if meta.get("priority", "").startswith("nice -20")
                else ".\n"
            )
        )
    L.append("## Machine\n")
    L.append("```")
    for k in ["nproc", "cpu", "kernel", "weir_commit", "nginx", "wrk", "h2load", "rustc", "priority"]:
        L.append(f"{k:12} {meta.get(k, '?')}")
    if meta.get("redis"):
        L.append(f"{'redis':12} {meta['redis']}")
    L.append("```\n")
    L.append(
        "Setup: backend = nginx, 1 worker, `return 200 \"hello world\\n\"` (12 bytes) plus "
        "16 KiB / 1 MiB static files, listening on 127.0.0.1:18100-18199 (100 \"pods\"). "
        "Proxies: weir (`gateway.workers: 1`, access log off unless stated, "
        f"`gateway.busy_poll_us: {BUSY_POLL_US}` in every throughput scenario except a0, acap and the plugin "
        "scenarios (p, pcap, jhs, jrs, lc, lr, lq, lqcap), where it runs with its defaults; busy polling keeps the proxy core at ~100% CPU under load, so "
        "compare CPU µs/request with that in mind) and nginx "
        "(1 worker, upstream `keepalive 64`, `proxy_http_version 1.1`, `Host $http_host`, "
        "the forwarding fields weir sends (`X-Forwarded-For/-Proto/-Host/-Port`, `X-Real-IP`), "
        "downstream `keepalive_requests` raised so neither side closes client connections). "
        "In acap, pcap and lqcap each proxy runs in a cgroup with a CFS quota of "
        f"{meta.get('cap_pct', '?')}% of one core per {meta.get('cap_period_us', 0) / 1000:g} ms, so that the proxy "
        "core, not the load generator's, is the bottleneck. "
        f"CPU pinning: {meta.get('pinning', '?')}. Load generator: `wrk -t1 -c64 --latency` with "
        "`bench/wrk-report.lua` (p99.9 from wrk's histogram); HTTP/2: `h2load -t1 -c64 -m10` "
        "with per-request `--log-file` for percentiles. Proxy CPU = utime+stime delta of the proxy "
        "process(es) over the run, in % of one core (nginx: master+worker); RSS = VmRSS after the run "
        "(nginx: master+worker). The machine is shared: other builds may run at times; the "
        "1-minute load average of each run is in the raw output. Compare ratios within one run of "
        "the suite, not absolute numbers across runs.\n"
    )
    L.append(
        "Plugin scenarios. p: one route with `key-auth` (a consumer with a key), `ip-restriction` (whitelist "
        f"127.0.0.0/8), `request-id` (defaults: uuid, also in the response) and `cors` (`allow_origins: {P_ORIGIN}`); "
        f"wrk sends `apikey: <key>` and `Origin: {P_ORIGIN}`. Its nginx does the same in nginx's terms: "
        "`map $http_apikey $bench_consumer` and a server-level `if ($bench_consumer = \"\") { return 401; }`, "
        "the consumer's name sent upstream as `X-Consumer-Username` (and `X-Credential-Identifier`, "
        "`X-Consumer-Custom-ID` removed, as weir does), `allow 127.0.0.0/8; deny all;`, "
        "`proxy_set_header`/`add_header X-Request-Id` (the client's, else `$request_id`), and `add_header ... always` "
        "for the CORS fields weir sends (`Access-Control-Allow-Origin`, `-Allow-Methods`, `-Max-Age`, "
        "`-Allow-Headers`, `Vary: Origin`). The raw output shows both response heads. pcap is p with each proxy "
        "held to half a core as in acap. jhs and jrs: one route with `jwt-auth`, a consumer with an HS256 "
        "secret or an RS256 public key (2048-bit key made with openssl for the run), wrk sending a valid token "
        "(`Authorization: Bearer`, with `exp` a day ahead, so it is checked); weir only, since nginx has no JWT "
        "verification without njs or a third-party module. p, jhs and jrs take turns with a second weir on a0's "
        "config (the same request, a route without plugins) so that the plugins' cost per request is a "
        "difference between alternating runs. gp: 10,000 idle keep-alive connections on p's route.\n"
    )
    L.append(
        "Rate-limit scenarios (limits set so that they never refuse during a run: every request does the "
        "limiter's work and passes; a refusal would show as a non-2xx error). lc: APISIX's own benchmark route "
        f"(its `benchmark/run.sh`): `limit-count` (`count: {LC_COUNT}`, `time_window: {LC_WINDOW}`, "
        "`key: remote_addr`, `rejected_code: 503`, `policy: local`, so the `X-RateLimit-*` fields are sent) and "
        "`prometheus: {}` (APISIX's series, recorded per request). lr: the same route with `policy: redis` against "
        "a redis-server started for the run on the load generator's core (no persistence: `--save '' "
        "--appendonly no`): one atomic Lua script per request, whose redis-server CPU is not in weir's figure "
        "(it is given beside it). lc and lr run weir only (nginx has neither plugin; APISIX's benchmark compares "
        "the route with and without them) and take turns with weir on a0's config, as p does. lq: one route with "
        f"`limit-req` (`rate: {LQ_RATE}`, `burst: {LQ_BURST}`, `key: remote_addr`, `nodelay: true`); its nginx: "
        f"`limit_req_zone $binary_remote_addr zone=bench:10m rate={LQ_RATE}r/s;` and "
        f"`limit_req zone=bench burst={LQ_BURST} nodelay;` in the location. wrk's one client address makes one "
        "bucket for every request in both. The burst is there for nginx, which counts time in whole "
        "milliseconds and refuses a second request within the same millisecond when the burst is 0, whatever "
        "the rate; 64 connections never have more than 64 requests in flight. lqcap is lq with each proxy held "
        "to half a core as in acap.\n"
    )
    L.append(
        "Chunked upload (u): every request is a POST whose 16,000-byte body is sent with "
        "`Transfer-Encoding: chunked` in 4 chunks of 4,000 bytes (`bench/wrk-upload.lua`), on (a0)'s route; "
        "the backend discards it and answers 200. weir parses the framing and re-frames the body as it "
        "streams it upstream (`weir_http::reframe`, the fast path); its nginx streams it too "
        "(`proxy_request_buffering off`): nginx's default buffers each body, to a temporary file past "
        "`client_body_buffer_size`, and ran at about 2.9k req/s with a 45 ms p99 on this host, which compares "
        "nothing.\n"
    )
    L.append("## Results\n")
    L.append(
        "| scenario | target | req/s | p50 | p99 | p99.9 | proxy CPU | CPU µs/req | load core | proxy RSS | errors | weir/nginx |"
    )
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    order = [k for k in SCENARIOS]
    for scn in order:
        for tgt in ["weir", "nginx"]:
            r = s.get((scn, tgt))
            if not r:
                continue
            ratio = ""
            n = s.get((scn, "nginx"))
            if tgt == "weir" and n and n["rps"]:
                ratio = (
                    f"**{r['rps'] / n['rps']:.2f}x** req/s, p99 {r['p99_us'] / max(n['p99_us'], 1):.2f}x"
                )
            L.append(
                f"| {scn} {SCENARIOS[scn][0]} | {tgt} | {r['rps']:,.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} "
                f"| {ms(r['p999_us'])} | {r['cpu_pct']:.0f}% | {r['cpu_us_per_req']:.1f} | {pct_or_dash(r['load_core_pct'])} "
                f"| {r['rss_kb'] / 1024:.1f} MiB "
                f"| {r['errors']} | {ratio} |"
            )
    L.append("")
    L.extend(plugin_section(s))
    if idle:
        L.append("### (g) idle keep-alive connections\n")
        L.append(
            "Each connection sends one request, reads the answer and stays open. g2 does the same over "
            "HTTP/2 with prior knowledge (h2c); its nginx listens with `http2`. gp is g on scenario p's route "
            "(key-auth, ip-restriction, request-id, cors; the request carries the API key and Origin).\n"
        )
        L.append("| protocol | target | connections held | failed | closed by server | RSS before | RSS with conns | per connection |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for _, wk, nk, proto in IDLE:
            for key, tgt in [(wk, "weir"), (nk, "nginx")]:
                g = idle.get(key)
                if g:
                    L.append(
                        f"| {proto} | {tgt} | {g['opened']:,} | {g.get('failed', 0)} | {g['closed_by_server']} "
                        f"| {g['rss_before_kb'] / 1024:.1f} MiB | {g['rss_after_kb'] / 1024:.1f} MiB "
                        f"| {g['per_conn_kb']:.1f} KiB |"
                    )
        L.append("")
    dflt = read_json(f"{rd}/default.json")
    scale = read_json(f"{rd}/scale.json")
    if scale:
        L.append("### Discovery scale\n")
        L.append(
            f"Fake API server (`bench/fake-apiserver`, weir-testkit) with {SCALE_SERVICES:,} Endpoints x "
            f"{SCALE_ENDPOINTS} ready addresses ({SCALE_SERVICES * SCALE_ENDPOINTS:,} endpoints), weir "
            "with `workers: 1` pinned like the proxy. Time = from spawning weir to the first 200 on "
            "`/status/ready` (polled every 5 ms).\n"
        )
        L.append("| weir config | ready after | RSS after sync | RSS +30 s churn |")
        L.append("|---|---:|---:|---:|")
        for key, label in [("routes1", "1 route (discovery of all, one subscribed)"), ("routes10k", "10,001 routes, one per service")]:
            v = scale.get(key)
            if v:
                L.append(
                    f"| {label} | {v.get('ready_ms', '?')} ms | {v.get('rss_kb', 0) / 1024:.1f} MiB "
                    f"| {(str(round(v['rss_after_churn_kb'] / 1024, 1)) + ' MiB') if v.get('rss_after_churn_kb') else '-'} |"
                )
        ch = scale.get("churn")
        if ch:
            L.append("")
            L.append(
                f"Churn: {ch.get('rate')} Endpoints updates/s for {ch.get('secs')} s (each moves one endpoint of a "
                f"service to another port; applied: {ch.get('applied', '?')}) while `wrk -c64` sends to "
                "`s5000.scale.test` (a discovered service) and a prober polls a marker route whose single "
                "endpoint the fake server moves between two ports every 500 ms.\n"
            )
            L.append(
                f"- traffic during churn: {ch.get('rps', 0):,.0f} req/s, p99 {ms(ch.get('p99_us', 0))}, "
                f"errors/non-2xx: {ch.get('errors')}"
            )
            d = ch.get("delays_ms") or []
            if d:
                ds = sorted(d)
                L.append(
                    f"- propagation delay (marker change emitted by the fake API server → first response "
                    f"from the new port), {len(ds)} changes: p50 {pct(ds, 50):.1f} ms, p90 {pct(ds, 90):.1f} ms, "
                    f"max {ds[-1]:.1f} ms; changes never observed: {ch.get('missed')}"
                )
            L.append(f"- prober: {ch.get('probe')}")
        L.append("")
    admin = read_json(f"{rd}/admin.json")
    if admin:
        L.append("### Admin API: change to live\n")
        L.append(
            "weir with `deployment.admin.state_file` (the file provider), then with `config_provider: etcd` "
            "(10 routes in etcd, then 10,000). `bench/admin.py propagation` "
            f"writes {admin.get('writes')} routes one at a time (`PUT /apisix/admin/routes/{{id}}`) and, for each, "
            "polls the proxy on one keep-alive connection until the new route answers; time = from sending "
            "the PUT to that first answer. `wrk -t1 -c16` keeps a steady load on another route throughout: "
            "as fast as it goes (both cores busy: the Admin API's threads wait for the proxy's core, so these "
            "rows measure this 2-core host's scheduler too), or, in the paced rows, with 2 ms between "
            "requests on each connection (`bench/wrk-paced.lua`, at most about 8,000 req/s), the next "
            "routes' numbers on the same weir.\n"
        )
        etcd = admin.get("etcd") or {}
        e10, e10k = etcd.get("routes10") or {}, etcd.get("routes10k") or {}
        fp, e10p = admin.get("file_paced") or {}, etcd.get("routes10_paced") or {}
        rows = [("file + state_file", admin.get("file"), admin.get("steady", {})),
                ("file + state_file, paced load", fp.get("prop"), fp.get("steady", {})),
                ("etcd, 10 routes", e10.get("prop"), e10.get("steady", {})),
                ("etcd, 10 routes, paced load", e10p.get("prop"), e10p.get("steady", {})),
                ("etcd, 10,000 routes", e10k.get("prop"), e10k.get("steady", {}))]
        if any(r[1] for r in rows):
            L.append("| provider | writes | PUT answered p50 / p99 | live p50 / p90 / p99 / max | live when the PUT was answered | steady load: requests, failed |")
            L.append("|---|---:|---:|---:|---:|---:|")
        for name, f, st in rows:
            if not f:
                continue
            lv, ak = f["live_ms"], f["ack_ms"]
            errs = sum((st.get("errors") or {}).values())
            L.append(
                f"| {name} | {f['n']} | {ak['p50']:.2f} / {ak['p99']:.2f} ms "
                f"| {lv['p50']:.2f} / {lv['p90']:.2f} / {lv['p99']:.2f} / {lv['max']:.2f} ms "
                f"| {f['first_poll_served']} of {f['n']} | {st.get('requests', 0):,}, {errs} |"
            )
        if e10k.get("ready_ms") is not None:
            rss = e10k.get("rss_kb")
            L.append(
                f"\nStart-up with 10,000 routes in etcd (`bench/admin.py seed-etcd`, APISIX's layout): "
                f"ready {e10k.get('ready_ms')} ms after the process started"
                + (f", RSS {rss / 1024:.0f} MiB 2 s later" if rss else "") + "."
            )
        if admin.get("etcd_skipped"):
            L.append(f"\netcd sub-runs skipped: {admin['etcd_skipped']}.")
        L.append(
            "\netcd runs on a free port with an empty data directory, pinned with the load generator; "
            "the file and etcd runs each have their own weir. With etcd a PUT is answered once this "
            "replica's watch has applied it."
        )
        L.append("")
    L.append("## Targets\n")
    L.append("| target | measured | verdict |")
    L.append("|---|---|---|")
    wa, na = s.get(("a", "weir")), s.get(("a", "nginx"))
    if wa and na:
        r = wa["rps"] / na["rps"]
        pr, pn = paired_ratio(results, "a", "weir", "nginx")
        paired = f"; median of {pn} back-to-back pairs {pr:.2f}x" if pr else ""
        L.append(
            f"| (a) weir >= 1.05x nginx req/s, p99 <= nginx | {r:.2f}x{paired}, p99 {ms(wa['p99_us'])} vs {ms(na['p99_us'])} "
            f"| {verdict(r >= 1.05 and wa['p99_us'] <= na['p99_us'])} |"
        )
        for scn in ["c", "b"]:
            w_ = s.get((scn, "weir"))
            ref = s.get((scn, "weir-a"))
            if w_ and ref:
                q = w_["rps"] / ref["rps"]
                L.append(
                    f"| ({scn}) weir within 5% of (a) | {q:.2f}x of weir on (a)'s config in alternating runs "
                    f"({w_['rps']:,.0f} vs {ref['rps']:,.0f} req/s; CPU {w_['cpu_us_per_req']:.1f} vs "
                    f"{ref['cpu_us_per_req']:.1f} µs/req) | {verdict(q >= 0.95)} |"
                )
            elif w_:
                q = w_["rps"] / wa["rps"]
                L.append(f"| ({scn}) weir within 5% of (a) | {q:.2f}x of weir (a), measured minutes apart | {verdict(q >= 0.95)} |")
    for scn, label, detail in [
        ("a0", "(a) with weir's defaults, busy polling off", "p99"),
        ("acap", f"(a0) with each proxy held to {meta.get('cap_pct', '?')}% of a core, so the proxy bounds req/s", "cpu"),
    ]:
        wv, nv = s.get((scn, "weir")), s.get((scn, "nginx"))
        if not (wv and nv):
            continue
        pr, pn = paired_ratio(results, scn, "weir", "nginx")
        paired = f"; median of {pn} back-to-back pairs {pr:.2f}x" if pr else ""
        if detail == "p99":
            extra = f", p99 {ms(wv['p99_us'])} vs {ms(nv['p99_us'])}"
        else:
            extra = f"; CPU {wv['cpu_us_per_req']:.1f} vs {nv['cpu_us_per_req']:.1f} µs/req"
        L.append(f"| ({scn}) for reference: {label} | {wv['rps'] / nv['rps']:.2f}x{paired}{extra} | - |")
    if scale and scale.get("routes10k"):
        v = scale["routes10k"]
        ok = v.get("ready_ms", 1e9) < 3000 and v.get("rss_kb", 1e12) < 300 * 1024
        L.append(
            f"| discovery 100k endpoints ready < 3 s, < 300 MiB | {v.get('ready_ms')} ms, {v.get('rss_kb', 0) / 1024:.0f} MiB "
            f"(10,001 routes) | {verdict(ok)} |"
        )
    if dflt:
        L.append(
            f"| < 30 MiB RSS idle, default config | {dflt['rss_kb'] / 1024:.1f} MiB | {verdict(dflt['rss_kb'] < 30 * 1024)} |"
        )
    if idle and idle.get("weir"):
        g = idle["weir"]
        L.append(
            f"| < 20 KiB per idle keep-alive connection | {g['per_conn_kb']:.1f} KiB (HTTP/1.1) | {verdict(g['per_conn_kb'] < 20)} |"
        )
    if idle and idle.get("weir-h2") and idle.get("nginx-h2"):
        g, n = idle["weir-h2"], idle["nginx-h2"]
        L.append(
            f"| (g2) for reference: idle HTTP/2 connection | {g['per_conn_kb']:.1f} KiB vs nginx {n['per_conn_kb']:.1f} KiB "
            "(the h2 crate's per-connection buffers; docs/architecture.md, known gaps) | - |"
        )
    L.extend(plugin_targets(results, s, idle))
    L.extend(limit_targets(results, s, read_json(f"{rd}/redis.json")))
    L.extend(reference_vs_nginx(s, "u", "chunked upload (both stream the body)"))
    admin_etcd = (admin or {}).get("etcd") or {}
    admin_rows = [
        ("Admin API change live on the data plane within 10 ms (p99), no failed request", "file provider",
         {"prop": (admin or {}).get("file"), "steady": (admin or {}).get("steady", {})}),
        ("the same with config_provider: etcd (10 routes)", None, admin_etcd.get("routes10") or {}),
        ("the same, paced steady load (file provider)", None, (admin or {}).get("file_paced") or {}),
        ("the same, paced steady load (etcd, 10 routes)", None, admin_etcd.get("routes10_paced") or {}),
    ]
    for target, provider, run in admin_rows:
        if not run.get("prop"):
            continue
        lv = run["prop"]["live_ms"]
        errs = sum((run.get("steady", {}).get("errors") or {}).values())
        L.append(
            f"| {target} | "
            f"p99 {lv['p99']:.2f} ms (p50 {lv['p50']:.2f}, max {lv['max']:.2f}{'; ' + provider if provider else ''}); "
            f"{errs} failed of the steady load's requests | "
            f"{'**met**' if lv['p99'] <= 10 and errs == 0 else '**not met**'} |"
        )
    L.extend(drift_rows(before, now))
    L.append("")
    L.extend(drift_table(before, now))
    if dflt:
        L.append(
            f"Default config (`crates/weir-config/src/default.yaml` on other ports, workers = CPU count, not pinned): "
            f"RSS {dflt['rss_kb'] / 1024:.1f} MiB, {dflt.get('threads', '?')} threads, measured {dflt.get('after', '?')}.\n"
        )
    L.append("Ratios between scenarios (same run):\n")
    for tgt in ["weir", "nginx"]:
        base = s.get(("a", tgt))
        if base:
            parts = [
                f"{scn} {s[(scn, tgt)]['rps'] / base['rps']:.2f}"
                for scn in SCENARIOS
                if (scn, tgt) in s and scn != "a"
            ]
            L.append(f"- {tgt}: req/s relative to its (a): " + ", ".join(parts))
    L.append("")
    prof = f"{rd}/profile.txt"
    L.append("## Profile\n")
    if os.path.exists(prof):
        L.append(open(prof).read().rstrip() + "\n")
    else:
        L.append("(not run in this mode; `bench/run.sh --profile` or a full run adds it)\n")
    L.extend(load_core_profile(rd))
    L.append("## Observations (computed from this run)\n")
    obs, bound, unbound = [], [], []
    for scn in SCENARIOS:
        wv, nv = s.get((scn, "weir")), s.get((scn, "nginx"))
        if not (wv and nv):
            continue
        line = (
            f"- ({scn}) CPU per request: weir {wv['cpu_us_per_req']:.1f} µs vs nginx {nv['cpu_us_per_req']:.1f} µs "
            f"({wv['cpu_us_per_req'] / max(nv['cpu_us_per_req'], 0.01):.2f}x); proxy core busy: weir {wv['cpu_pct']:.0f}%, "
            f"nginx {nv['cpu_pct']:.0f}%"
        )
        if wv["load_core_pct"] is not None and nv["load_core_pct"] is not None:
            line += f"; load-generator core busy: {wv['load_core_pct']:.0f}% / {nv['load_core_pct']:.0f}%"
            if wv["load_core_pct"] >= LOAD_BOUND_PCT and nv["load_core_pct"] >= LOAD_BOUND_PCT:
                bound.append(scn)
            # Neither core near full: the run waited on something else.
            cap = meta.get("cap_pct", 100) if scn in ("acap", "pcap", "lqcap") else 100
            if max(wv["load_core_pct"], nv["load_core_pct"]) < 90 and max(wv["cpu_pct"], nv["cpu_pct"]) < 0.9 * cap:
                unbound.append(scn)
        if wv["segs_per_req"] is not None and nv["segs_per_req"] is not None:
            line += f"; TCP segments per request: {wv['segs_per_req']:.2f} / {nv['segs_per_req']:.2f}"
        obs.append(line + ".")
        if wv["errors"] or nv["errors"]:
            obs.append(f"- ({scn}) errors/non-2xx: weir {wv['errors']}, nginx {nv['errors']}.")
        if wv["rss_kb"] > 1.5 * nv["rss_kb"] and wv["rss_kb"] - nv["rss_kb"] > 8 * 1024:
            obs.append(
                f"- ({scn}) weir RSS {wv['rss_kb'] / 1024:.0f} MiB vs nginx {nv['rss_kb'] / 1024:.0f} MiB after the runs."
            )
    if obs:
        L.append(
            "When neither proxy keeps its core busy (proxy CPU well under 100%), the shared load-generator core "
            "(wrk + backend on CPU 0) bounds req/s and the CPU µs/request figure is the better efficiency "
            "comparison. Pairs of figures are weir / nginx. Load-generator core busy is the median share of "
            "CPU 0's time, all processes (/proc/stat), over the runs; TCP segments count every segment the host "
            "sent (client, proxy and backend sides), per request.\n"
        )
        if bound:
            L.append(
                f"Bounded by the load-generator core (busy >= {LOAD_BOUND_PCT}% under both proxies): "
                + ", ".join(f"({x})" for x in bound)
                + ". There req/s measures the work wrk and the backend do per request, which a proxy changes "
                "only through how it batches their wake-ups, so the weir/nginx req/s ratio stays near 1 "
                "whatever the proxies' own cost. The load-generator core profile above shows that work.\n"
            )
        if unbound:
            L.append(
                "Bounded by neither core (load-generator core under 90% busy and both proxies under 90% of the CPU "
                "they may use): " + ", ".join(f"({x})" for x in unbound) + ". There both cores sat idle part of "
                "the time while requests were in flight: req/s measured waiting between the two cores (wake-up "
                "delays that the guest does not account, such as a busy host scheduling its idle vCPUs late), "
                "not either proxy's work. CPU µs/request is the comparison to read there.\n"
            )
        L.extend(obs)
        L.append("")
    notes = f"{rd}/notes.md"
    if os.path.exists(notes) and open(notes).read().strip():
        L.append(open(notes).read().rstrip() + "\n")
    L.append("## How to run\n")
    L.append(
        "```sh\n"
        "bench/run.sh            # full: 5 x 6 s per target and scenario (9 for a, a0, acap, pcap), discovery scale, profile (~30 min)\n"
        "bench/run.sh --quick    # 1 x 3 s per target, everything once (~6 min)\n"
        "bench/run.sh --smoke    # 1 x 2 s, scenario (a) only, every generated config validated; does not touch docs/performance.md\n"
        "bench/run.sh --only a,c # chosen scenarios (a a0 acap b c d16k d1m e f p pcap jhs jrs lc lr lq lqcap u g gp scale default admin)\n"
        "CARGO_TARGET_DIR=/tmp/t bench/run.sh   # build (and run) weir from another target directory\n"
        "```\n"
        "Needs root for `apt-get install -y nginx-light wrk nghttp2-client` when those are missing "
        "(and `linux-perf` for the profile, `redis-server` for lr, which is skipped without it). Everything binds 127.0.0.1 only; configs, logs and raw "
        "outputs go to a temporary directory (kept with `--keep`), raw results to `bench/results/`.\n\n"
        "Targeted runs (`--only ... --runs 15 --doc docs/benchmarks/NAME.md`, more pairs for one question, or "
        "a binary from another commit with `--no-build`, `CARGO_TARGET_DIR` and `BENCH_WEIR_COMMIT`) are kept "
        "in `docs/benchmarks/`, indexed by its README.\n"
    )
    L.append("## Raw output\n")
    L.append("Every measured run (`bench/results/runs.jsonl`, latency in µs):\n")
    L.append("```")
    for r in results:
        L.append(fmt_run(r))
    L.append("```\n")
    extra = f"{rd}/raw.txt"
    if os.path.exists(extra):
        L.append("Other raw output:\n")
        L.append("```")
        L.append(open(extra).read().rstrip())
        L.append("```")
    # Every scenario's last recorded ratio, this run's where it ran: the next
    # run compares with these.
    carried = dict(before)
    carried.update(now)
    L.append("")
    rec = {"run": meta.get("date", "?"), "ratios": carried, "before": before}
    L.append(f"<!-- {RATIOS_TAG} {json.dumps(rec, sort_keys=True)} -->")
    w(a.out, "\n".join(L) + "\n")
    # Console table too
    print("\n".join(l for l in L if l.startswith("|")))


def paired(results, scn, tgt, base, key, op):
    """Median over runs of op(tgt's key, base's key), each run paired with
    the run of the same number (taken back to back); (value, pairs)."""
    by_run = {}
    for r in results:
        if r["scenario"] == scn and r["target"] in (tgt, base) and r.get(key) is not None:
            by_run.setdefault(r["run"], {})[r["target"]] = r[key]
    xs = [op(v[tgt], v[base]) for v in by_run.values() if tgt in v and base in v and v[base]]
    return (median(xs), len(xs)) if xs else (None, 0)


def plugin_section(s):
    """weir with plugins against weir without, in alternating runs."""
    rows = [scn for scn in A0_REF if (scn, "weir") in s and (scn, "weir-a0") in s]
    if not rows:
        return []
    a0 = s.get(("a0", "weir"))
    L = ["### Plugin scenarios: cost per request\n"]
    L.append(
        "weir with the scenario's plugins against a second weir on a0's config (the same request fields, a "
        "route without plugins), in alternating runs of the same scenario; both without busy polling, so CPU "
        "µs/request is work, not spinning. Cost = difference of the medians."
        + (
            f" For comparison, weir's CPU in scenario a0 itself (minutes apart): {a0['cpu_us_per_req']:.1f} µs/request."
            if a0
            else ""
        )
        + "\n"
    )
    L.append(
        "| scenario | weir req/s | weir CPU µs/req | without plugins: req/s | without plugins: CPU µs/req "
        "| cost per request | CPU ratio | weir proxy core busy |"
    )
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for scn in rows:
        wv, rv = s[(scn, "weir")], s[(scn, "weir-a0")]
        L.append(
            f"| {scn} {SCENARIOS[scn][0]} | {wv['rps']:,.0f} | {wv['cpu_us_per_req']:.1f} | {rv['rps']:,.0f} "
            f"| {rv['cpu_us_per_req']:.1f} | {wv['cpu_us_per_req'] - rv['cpu_us_per_req']:+.1f} µs "
            f"| {wv['cpu_us_per_req'] / max(rv['cpu_us_per_req'], 0.01):.2f}x | {wv['cpu_pct']:.0f}% |"
        )
    L.append("")
    return L


def cpu_target(results, s, scn, limit, label):
    """Target line: weir's CPU per request in `scn` within `limit` of the same
    route without plugins (weir on a0's config in alternating runs, else
    weir in a0 itself)."""
    wv, rv, a0 = s.get((scn, "weir")), s.get((scn, "weir-a0")), s.get(("a0", "weir"))
    if not (wv and (rv or a0)):
        return []
    ref = rv or a0
    q = wv["cpu_us_per_req"] / max(ref["cpu_us_per_req"], 0.01)
    where = "weir without plugins in alternating runs" if rv else "weir in a0, minutes apart"
    extra = ""
    if rv:
        pr, pn = paired(results, scn, "weir", "weir-a0", "cpu_us_per_req", lambda x, y: x / y)
        if pr:
            extra += f"; median of {pn} back-to-back pairs {pr:.2f}x"
        if a0:
            extra += f"; against a0's weir (minutes apart) {wv['cpu_us_per_req'] / max(a0['cpu_us_per_req'], 0.01):.2f}x ({a0['cpu_us_per_req']:.1f} µs)"
    return [
        f"| ({scn}) {label}: weir CPU per request within {limit - 1:.0%} of the same route without plugins "
        f"| {q:.2f}x: {wv['cpu_us_per_req']:.1f} vs {ref['cpu_us_per_req']:.1f} µs/req ({where}){extra} "
        f"| {verdict(q <= limit)} |"
    ]


def cap_target(results, s, scn, minimum, label):
    """Target line: weir's req/s over nginx's in `scn`, each proxy held to
    half a core."""
    r = ratio_of(s, scn, "nginx")
    if not r:
        return []
    wv, nv = s[(scn, "weir")], s[(scn, "nginx")]
    pr, pn = paired_ratio(results, scn, "weir", "nginx")
    paired_txt = f"; median of {pn} back-to-back pairs {pr:.2f}x" if pr else ""
    return [
        f"| ({scn}) {label}, each proxy held to half a core: weir >= {minimum:.1f}x nginx req/s "
        f"| {r:.2f}x{paired_txt} ({wv['rps']:,.0f} vs {nv['rps']:,.0f} req/s; CPU {wv['cpu_us_per_req']:.1f} vs "
        f"{nv['cpu_us_per_req']:.1f} µs/req) | {verdict(r >= minimum)} |"
    ]


def reference_vs_nginx(s, scn, label):
    r = ratio_of(s, scn, "nginx")
    if not r:
        return []
    wv, nv = s[(scn, "weir")], s[(scn, "nginx")]
    return [
        f"| ({scn}) for reference: {label}, weir vs nginx (load-generator core shared) | {r:.2f}x req/s; "
        f"CPU {wv['cpu_us_per_req']:.1f} vs {nv['cpu_us_per_req']:.1f} µs/req | - |"
    ]


def plugin_targets(results, s, idle):
    L = cpu_target(results, s, "p", P_CPU_MAX, "plugin route")
    L += cap_target(results, s, "pcap", PCAP_MIN, "plugin route")
    gp, g = (idle or {}).get("weir-p"), (idle or {}).get("weir")
    if gp:
        if g:
            L.append(
                f"| (gp) idle keep-alive connection on the plugin route: memory as without plugins (g, about 3 KiB), "
                f"at most {GP_MAX - 1:.0%} more | {gp['per_conn_kb']:.1f} KiB vs {g['per_conn_kb']:.1f} KiB in (g), "
                f"same run | {verdict(gp['per_conn_kb'] <= GP_MAX * g['per_conn_kb'])} |"
            )
        else:
            L.append(f"| (gp) idle keep-alive connection on the plugin route | {gp['per_conn_kb']:.1f} KiB ((g) not run) | - |")
    L += reference_vs_nginx(s, "p", "plugin route")
    for scn, alg in [("jhs", "HS256"), ("jrs", "RS256")]:
        wv, rv = s.get((scn, "weir")), s.get((scn, "weir-a0"))
        if wv and rv:
            pc, pn = paired(results, scn, "weir", "weir-a0", "cpu_us_per_req", lambda x, y: x - y)
            L.append(
                f"| ({scn}) for reference: jwt-auth {alg}, cost per request | "
                f"{wv['cpu_us_per_req'] - rv['cpu_us_per_req']:+.1f} µs ({wv['cpu_us_per_req']:.1f} vs "
                f"{rv['cpu_us_per_req']:.1f} µs/req without plugins"
                + (f"; median of {pn} back-to-back pairs {pc:+.1f} µs" if pc is not None else "")
                + f"); req/s {wv['rps'] / rv['rps']:.2f}x | - |"
            )
    return L


def limit_targets(results, s, redis):
    """The rate-limit scenarios (issue 13): lc's CPU target, lr's cost of the
    redis policy, lqcap's req/s target against nginx's limit_req."""
    L = cpu_target(results, s, "lc", LC_CPU_MAX, "limit-count (local) + prometheus")
    wv, rv = s.get(("lr", "weir")), s.get(("lr", "weir-a0"))
    if wv and rv:
        cost = wv["cpu_us_per_req"] - rv["cpu_us_per_req"]
        pc, pn = paired(results, "lr", "weir", "weir-a0", "cpu_us_per_req", lambda x, y: x - y)
        parts = [
            f"{cost:+.1f} µs of weir CPU over the same route without plugins ({wv['cpu_us_per_req']:.1f} vs "
            f"{rv['cpu_us_per_req']:.1f} µs/req"
            + (f"; median of {pn} back-to-back pairs {pc:+.1f} µs" if pc is not None else "")
            + ")"
        ]
        lw, lref = s.get(("lc", "weir")), s.get(("lc", "weir-a0"))
        if lw and lref:
            local = lw["cpu_us_per_req"] - lref["cpu_us_per_req"]
            parts.append(
                f"{cost - local:+.1f} µs over the local policy (lc's cost {local:+.1f} µs, each against its own "
                "alternating runs)"
            )
        reqs = sum(r["requests"] for r in results if r["scenario"] == "lr" and r["target"] == "weir")
        if redis and reqs:
            parts.append(
                f"redis-server (on the load-generator core) {redis['cpu_s'] * 1e6 / reqs:.1f} µs CPU and "
                f"{redis['commands'] / reqs:.2f} commands per request (the script's own calls included)"
            )
        parts.append(f"req/s {wv['rps'] / max(rv['rps'], 1):.2f}x without plugins")
        L.append(
            "| (lr) for reference: limit-count with `policy: redis` + prometheus, the redis policy's cost per "
            "request | " + "; ".join(parts) + " | - |"
        )
    L += cap_target(results, s, "lqcap", LQCAP_MIN, "limit-req")
    L += reference_vs_nginx(s, "lq", "limit-req")
    return L


def drift(before, now):
    """(scenario, last, this) for the scenarios recorded before and run now."""
    return [(k, before[k], now[k]) for k in now if k in before and before[k].get("value")]


def drift_rows(before, now):
    d = drift(before, now)
    if not d:
        return []
    parts, ok = [], True
    for k, b, n in d:
        ch = n["value"] / b["value"] - 1
        ok = ok and abs(ch) <= DRIFT_MAX
        parts.append(f"{k} {ch:+.1%}")
    return [
        f"| every earlier scenario within {DRIFT_MAX:.0%} of its last recorded ratio (table below) "
        f"| {', '.join(parts)} | {verdict(ok)} |"
    ]


def drift_table(before, now):
    keys = [k for k in list(SCENARIOS) + [x[0] for x in IDLE] if k in before or k in now]
    if not keys:
        return []
    L = ["### Against the last recorded figures\n"]
    L.append(
        "Each scenario's figure (weir / nginx req/s; weir's KiB per idle connection for g, g2, gp; for jhs and "
        "jrs weir / weir without plugins) against the one last recorded in this document, carried over from "
        f"run to run in a comment at its end (a scenario not run keeps its last figure). Within "
        f"{DRIFT_MAX:.0%} is the bar for scenarios that were recorded before.\n"
    )
    L.append("| scenario | figure | last recorded | recorded on | this run | change | within 3% |")
    L.append("|---|---|---:|---|---:|---:|---|")
    for k in keys:
        b, n = before.get(k), now.get(k)
        what = (n or b)["what"]
        fmt = (lambda v: f"{v:.1f} KiB") if "KiB" in what else (lambda v: f"{v:.3f}x")
        if b and n:
            ch = n["value"] / b["value"] - 1
            L.append(
                f"| {k} | {what} | {fmt(b['value'])} | {b['date']} | {fmt(n['value'])} | {ch:+.1%} "
                f"| {'yes' if abs(ch) <= DRIFT_MAX else '**no**'} |"
            )
        elif n:
            L.append(f"| {k} | {what} | - | - | {fmt(n['value'])} | - | first recorded |")
        else:
            L.append(f"| {k} | {what} | {fmt(b['value'])} | {b['date']} | not run | - | - |")
    L.append("")
    return L


def read_perf_lines(path, fields):
    """Rows of a `perf report --stdio` listing: (percent, the `fields` columns)."""
    rows = []
    try:
        for line in open(path):
            p = line.split()
            if len(p) >= fields + 1 and p[0].endswith("%"):
                rows.append((float(p[0][:-1]), tuple(p[1 : fields + 1])))
    except (OSError, ValueError):
        pass
    return rows


def read_number(path):
    try:
        return float(open(path).read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def load_core_profile(rd):
    """Side-by-side profile of the load-generator core under weir and nginx."""
    by = {}
    for tgt in ["weir", "nginx"]:
        dso = read_perf_lines(f"{rd}/loadcore-{tgt}-dso.txt", 2)
        sym = read_perf_lines(f"{rd}/loadcore-{tgt}-sym.txt", 2)
        rps = read_number(f"{rd}/loadcore-{tgt}-rps.txt")
        if dso and rps:
            by[tgt] = (dso, sym, rps)
    if len(by) != 2:
        return []
    secs = read_number(f"{rd}/loadcore-secs.txt") or 0
    L = ["### The load-generator core\n"]
    L.append(
        f"`perf record -a -C <load core> -e cpu-clock` for {secs:.0f} s while `wrk -t1 -c64` drives scenario (a) "
        "through each proxy (weir with its defaults, as a0), so the profile shows what wrk and the backend "
        "nginx do per request under each. Share of the core's samples by process and space (`swapper` is idle):\n"
    )
    L.append("| process | space | under weir | under nginx |")
    L.append("|---|---|---:|---:|")

    def space(dso):
        return "kernel" if dso.startswith("[kernel") else "user"

    shares = {}
    for tgt, (dso, _, _) in by.items():
        for pc, (comm, d) in dso:
            cell = shares.setdefault((comm, space(d)), {})
            cell[tgt] = cell.get(tgt, 0.0) + pc
    keys = sorted(shares, key=lambda k: -max(shares[k].values()))
    for comm, sp in keys[:8]:
        v = shares[(comm, sp)]
        L.append(f"| {comm} | {sp} | {v.get('weir', 0):.1f}% | {v.get('nginx', 0):.1f}% |")
    L.append("")
    per_req = {}
    for tgt, (dso, _, rps) in by.items():
        idle = sum(pc for pc, (comm, _) in dso if comm == "swapper")
        per_req[tgt] = (100 - idle) / 100 * 1e6 / rps
    L.append(
        f"req/s over the window: weir {by['weir'][2]:,.0f}, nginx {by['nginx'][2]:,.0f}. Load-core time per "
        f"request (busy share / req/s): weir {per_req['weir']:.2f} µs, nginx {per_req['nginx']:.2f} µs.\n"
    )
    nsym = {name: pc for pc, (_, name) in by["nginx"][1]}
    if by["weir"][1]:
        L.append("Top symbols on that core (all processes), in weir's order, with nginx's share of the same symbol:\n")
        L.append("| symbol | under weir | under nginx |")
        L.append("|---|---:|---:|")
        for pc, (_, name) in by["weir"][1][:12]:
            other = nsym.get(name)
            L.append(f"| `{name}` | {pc:.2f}% | {'-' if other is None else f'{other:.2f}%'} |")
        L.append("")
    return L
