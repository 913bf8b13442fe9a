#!/usr/bin/env bash
# How fast an Admin API change is live with many routes (issue 14's 10 ms
# p99), for one provider at a time:
#
#   bench/admin-scale.sh etcd WEIR_BINARY [ROUTES] [WRITES]
#   bench/admin-scale.sh file WEIR_BINARY [ROUTES] [WRITES]
#
# etcd: a real etcd (Debian's etcd-server) on free ports with its data in a
#       temporary directory, seeded with ROUTES routes (bench/admin.py
#       seed-etcd, APISIX's layout); weir with config_provider: etcd.
# file: ROUTES routes in the configuration file, the Admin API writing to a
#       state_file.
# Then bench/admin.py propagation writes WRITES routes, one at a time, and
# prints the time from each PUT to the proxy's first answer from it (JSON).
# weir runs with `workers: 1`; a small Python backend answers 200. Ports
# are free ones picked at start (never the suite's 18000-18200 /
# 19000-19300). Everything started is stopped on exit.
#
# WEIR_PERF=FILE records `perf record -g` of weir during the writes;
# WEIR_LOG_COPY=FILE keeps weir's log (RUST_LOG=weir_proxy::compile=debug
# shows each compile's stages).
set -euo pipefail

PROVIDER=${1:?etcd or file}
WEIR=${2:?path to the weir binary}
ROUTES=${3:-10000}
WRITES=${4:-200}
B=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT

free_port() {
  python3 - <<'EOF'
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if not (18000 <= p <= 18200 or 19000 <= p <= 19300 or p in (23790, 23800)):
        print(p); break
EOF
}
wait_port() { # wait_port PORT
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2; exit 1
}

BACKEND=$(free_port) PROXY=$(free_port) ADMIN=$(free_port) CONTROL=$(free_port)
KEY=$(python3 -c 'import secrets; print(secrets.token_hex(16))')

python3 - "$BACKEND" >/dev/null 2>&1 <<'EOF' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
PIDS+=($!)
wait_port "$BACKEND"

common="gateway:
  workers: 1
  listeners: [{address: \"127.0.0.1:$PROXY\"}]
  control: {address: \"127.0.0.1:$CONTROL\"}
  access_log: {enabled: false}"
admin="  admin:
    admin_listen: {ip: 127.0.0.1, port: $ADMIN}
    admin_key: [{name: bench, key: \"$KEY\", role: admin}]"

case "$PROVIDER" in
  etcd)
    EC=$(free_port) EP=$(free_port)
    etcd --name bench --data-dir "$W/etcd" \
      --listen-client-urls "http://127.0.0.1:$EC" --advertise-client-urls "http://127.0.0.1:$EC" \
      --listen-peer-urls "http://127.0.0.1:$EP" --initial-advertise-peer-urls "http://127.0.0.1:$EP" \
      --initial-cluster "bench=http://127.0.0.1:$EP" --initial-cluster-state new \
      --logger zap --log-level error >"$W/etcd.log" 2>&1 &
    PIDS+=($!)
    wait_port "$EC"
    for _ in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$EC/health" | grep -q true && break
      sleep 0.1
    done
    python3 "$B/admin.py" seed-etcd --etcd-port "$EC" --routes "$ROUTES" \
      --upstream "127.0.0.1:$BACKEND" >/dev/null
    cat >"$W/weir.yaml" <<EOF
$common
deployment:
  role_traditional: {config_provider: etcd}
  etcd: {host: ["http://127.0.0.1:$EC"]}
$admin
EOF
    ;;
  file)
    python3 - "$ROUTES" "$BACKEND" >"$W/routes.yaml" <<'EOF'
import json, sys
n, backend = int(sys.argv[1]), sys.argv[2]
print("routes:")
for i in range(n):
    print(f"  - {{id: r{i}, uri: \"/api/r{i}/*\", host: h{i % 100}.seed.test, "
          f"upstream: {{type: roundrobin, nodes: {{\"127.0.0.1:{backend}\": 1}}}}}}")
EOF
    { echo "$common"; echo "deployment:"; echo "$admin"
      echo "    state_file: $W/admin-state.json"; cat "$W/routes.yaml"; } >"$W/weir.yaml"
    ;;
  *) echo "provider: etcd or file" >&2; exit 2 ;;
esac

"$WEIR" run -c "$W/weir.yaml" >"$W/weir.log" 2>&1 &
WPID=$!
PIDS+=("$WPID")
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$CONTROL/status/ready" >/dev/null && break
  sleep 0.1
done
wait_port "$ADMIN"
if [ -n "${WEIR_PERF:-}" ]; then
  perf record -g -F 999 -p "$WPID" -o "$WEIR_PERF" >/dev/null 2>&1 &
  PERF=$!
  sleep 0.5
fi
python3 "$B/admin.py" propagation --admin-port "$ADMIN" --proxy-port "$PROXY" --key "$KEY" \
  --upstream "127.0.0.1:$BACKEND" --count "$WRITES"
if [ -n "${WEIR_PERF:-}" ]; then
  kill -INT "$PERF"; wait "$PERF" || true
fi
[ -n "${WEIR_LOG_COPY:-}" ] && cp "$W/weir.log" "$WEIR_LOG_COPY"
if grep -qiE '"level":"(ERROR|WARN)"| ERROR | WARN ' "$W/weir.log"; then
  echo "weir logged warnings or errors:" >&2
  grep -iE 'ERROR|WARN' "$W/weir.log" | head -5 >&2
fi
