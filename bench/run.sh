#!/usr/bin/env bash
# weir vs nginx benchmark suite. ONE command:
#
#   bench/run.sh            full: 5 x 6 s per target and scenario (9 x 6 s for a, a0, acap, pcap, lqcap; alternating), discovery scale, profile
#   bench/run.sh --quick    1 x 3 s per target, everything once
#   bench/run.sh --smoke    1 x 2 s, scenario (a) only, no docs written (CI-sized); every
#                           generated config is still checked (weir validate, nginx -t)
#
# Options: --only a,a0,acap,b,c,d16k,d1m,e,f,p,pcap,jhs,jrs,lc,lr,lq,lqcap,u,g,gp,default,scale,admin  --runs N  --secs N
#          --no-profile  --no-build  --no-install  --keep (keep the temp dir)
#          --doc FILE (default docs/performance.md; --smoke writes none)
#          --priority (as root: the suite runs at nice -20, its session's autogroup
#          too, and the acap/pcap cgroups at the highest CPU weight, so other work
#          on a shared host waits; off by default, as that work then crawls)
# weir is built with cargo into $CARGO_TARGET_DIR when set (else target/).
# With --no-build and a binary built from another commit, BENCH_WEIR_COMMIT
# names that commit in the report (else the checkout's HEAD is named), and
# only the chosen scenarios' generated configs are validated.
# Scenario lr starts its own redis-server (Debian's; installed like nginx
# when missing, else lr is skipped with a note) on a free 127.0.0.1 port,
# without persistence, pinned like the backend; stopped at the end.
# Scenario admin starts its own etcd (Debian's etcd-server, not installed by
# this script: its etcd sub-runs are skipped with a note when it is missing)
# on free 127.0.0.1 ports with its data in the temp dir; stopped at the end.
#
# Writes bench/results/ (runs.jsonl, *.json, raw.txt) and, except in smoke
# mode, REGENERATES docs/performance.md. Binds 127.0.0.1 only; uses its own
# nginx configs under a temp dir (never the system nginx config).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
B=$REPO/bench
MODE=full RUNS=5 SECS=6 ONLY="" PROFILE=1 BUILD=1 INSTALL=1 KEEP=0 PRIORITY=0
# The headline scenarios (a, a0, acap, pcap, lqcap) take more pairs in full mode:
# their target margins (5%, 10%) are about this host's run-to-run noise.
HEADLINE_RUNS=9
# Scenario acap: each proxy's CFS quota, in % of one core per period.
CAP_PCT=50 CAP_PERIOD_US=2000
DOC=$REPO/docs/performance.md
ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MODE=quick RUNS=1 SECS=3 HEADLINE_RUNS=1 ;;
    --smoke) MODE=smoke RUNS=1 SECS=2 HEADLINE_RUNS=1 ONLY=a PROFILE=0 DOC="" ;;
    --only) ONLY=$2; shift ;;
    --runs) RUNS=$2; HEADLINE_RUNS=$2; shift ;;
    --secs) SECS=$2; shift ;;
    --no-profile) PROFILE=0 ;;
    --no-build) BUILD=0 ;;
    --no-install) INSTALL=0 ;;
    --priority) PRIORITY=1 ;;
    --keep) KEEP=1 ;;
    --doc) DOC=$2; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
ALL="a a0 acap b c d16k d1m e f p pcap jhs jrs lc lr lq lqcap u g gp default scale admin"
[ -n "$ONLY" ] || ONLY=$ALL
want() { [[ " ${ONLY//,/ } " == *" $1 "* ]]; }

log() { printf '\n== %s\n' "$*" >&2; }
RES=${BENCH_RESULTS:-$B/results}
rm -rf "$RES"; mkdir -p "$RES"
RAW=$RES/raw.txt; : > "$RAW"
NOTES=$RES/notes.md; : > "$NOTES"
raw() { printf '%s\n' "$*" >> "$RAW"; }
W=$(mktemp -d /tmp/weir-bench.XXXXXX)

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -z "${CAP_CG:-}" ] || { sleep 0.2; cap_remove; }
  [ -z "${AG_NICE:-}" ] || echo "$AG_NICE" > "/proc/$$/autogroup" 2>/dev/null || true  # the session's own again
  if [ "$KEEP" = 1 ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
stop() { # stop PID: TERM, wait up to 5 s, KILL
  local p=$1 i
  kill "$p" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

# ---------------------------------------------------------------- tools
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
[ "$PROFILE" = 0 ] || command -v perf >/dev/null || need+=(linux-perf)
# redis-server only for scenario lr, which is skipped (with a note) when it
# is missing and cannot be installed here.
REDIS=""
if want lr; then
  if command -v redis-server >/dev/null; then
    REDIS=$(command -v redis-server)
  elif [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ]; then
    need+=(redis-server); REDIS=/usr/bin/redis-server
  else
    why=$([ "$INSTALL" = 0 ] && echo "--no-install given" || echo "not root")
    log "lr: redis-server is missing ($why); scenario lr skipped"
    echo "- lr skipped: redis-server is missing ($why; \`apt-get install -y redis-server\`)." >> "$NOTES"
  fi
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing packages: ${need[*]} (run as root, or: apt-get install -y ${need[*]})" >&2
    exit 1
  fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
PY="python3 $B/bench.py"
export PYTHONDONTWRITEBYTECODE=1  # no bench/__pycache__ left in the work tree

# ---------------------------------------------------------------- build
# weir's cargo profile: `release` (fat LTO), or BENCH_CARGO_PROFILE, e.g.
# `ci-smoke` (release without LTO, parallel codegen: a few minutes less to
# build) for CI's smoke run, which asserts no speed.
WEIR_PROFILE=${BENCH_CARGO_PROFILE:-release}
# CARGO_TARGET_DIR, when set, holds both builds (made absolute: cargo runs
# from two directories below).
[ -z "${CARGO_TARGET_DIR:-}" ] || export CARGO_TARGET_DIR=$(realpath -m "$CARGO_TARGET_DIR")
if [ "$BUILD" = 1 ]; then
  log "cargo build --profile $WEIR_PROFILE -p weir"
  (cd "$REPO" && cargo build --profile "$WEIR_PROFILE" -p weir)
  if want c || want scale; then
    log "cargo build --release (bench/fake-apiserver)"
    (cd "$B/fake-apiserver" && cargo build --release)
  fi
fi
WEIR=${CARGO_TARGET_DIR:-$REPO/target}/$WEIR_PROFILE/weir
FAKE=${CARGO_TARGET_DIR:-$B/fake-apiserver/target}/release/fake-apiserver

# ---------------------------------------------------------------- machine
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
# On a shared host, builds and tests of other work take CPU time from the
# load generator and the proxies at random, and ratios between runs drift
# by far more than the targets' margins. With --priority, as root, the suite
# (everything it starts from here on: backend, proxies, wrk) runs at nice
# -20, so such work mostly waits; on an idle host this changes nothing. Off
# by default: the other work is starved for the suite's length.
# With autogroup scheduling (kernel.sched_autogroup_enabled), nice values
# only order processes within one session: other sessions' builds get the
# same share as this whole suite whatever its nice, so the session's own
# autogroup nice is set too (this session: run.sh and what it starts).
PRIO="none (nice 0; --priority not given)"
if [ "$PRIORITY" = 1 ] && [ "$(id -u)" = 0 ] && renice -n -20 -p $$ >/dev/null 2>&1; then
  PRIO="nice -20 (bench/run.sh and everything it starts"
  AG_NICE=$(awk '{print $3}' "/proc/$$/autogroup" 2>/dev/null || true)
  if [ -n "$AG_NICE" ] && echo -20 > "/proc/$$/autogroup" 2>/dev/null; then
    PRIO+=", and its session's autogroup"
  else
    AG_NICE=""
  fi
  PRIO+="); acap/pcap cgroups at the highest CPU weight"
fi
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  LOAD="taskset -c 0" PROXY="taskset -c 1" LOAD_CPU=0 PROXY_CPU=1
  PINNING="wrk/h2load + backend nginx + fake API server on CPU 0, proxy (weir or nginx) on CPU 1 (taskset)"
else
  LOAD="" PROXY="" LOAD_CPU="" PROXY_CPU=""
  PINNING="none (fewer than 2 CPUs or no taskset)"
fi
# A free port for lr's redis-server, known before the configs are written.
REDIS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$PY gen "$W" --redis-port "$REDIS_PORT" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,DNS:bench.test,IP:127.0.0.1" \
  -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null

# Every generated config must load, whatever runs: weir compiles its plugins
# (consumers, keys) and nginx parses its own, so a config that drifted from
# weir's schema fails here in seconds, in smoke mode too.
# A binary from another commit (BENCH_WEIR_COMMIT) may predate some
# scenarios' plugins: then only the configs of the scenarios that run (and
# their reference weirs) are checked.
for f in "$W"/weir-*.yaml; do
  n=$(basename "$f" .yaml); n=${n#weir-}
  if [ -n "${BENCH_WEIR_COMMIT:-}" ] && ! want "$n"; then
    case "$n" in aref | a0ref | scale1) ;; *) continue ;; esac
  fi
  "$WEIR" validate -c "$f" >/dev/null || { echo "generated config $(basename "$f") does not validate" >&2; exit 1; }
done
for f in "$W"/nginx-*.conf "$W/backend.conf"; do
  n=$(basename "$f" .conf)
  "$NGINX" -t -q -c "$f" -p "$W/" -e "$W/$n.error.log" || { echo "generated config $n.conf: nginx -t failed" >&2; exit 1; }
done

python3 - "$RES/meta.json" <<EOF
import json, os, platform, subprocess, sys, datetime
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip() or subprocess.run(c, shell=True, capture_output=True, text=True).stderr.strip()
    except Exception as e: return str(e)
cpu = sh("lscpu | sed -n 's/^Model name: *//p'")
json.dump({
  "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
  "loadavg_start": open("/proc/loadavg").read().split()[:3],
  "command": "bench/run.sh $ARGS".strip(), "mode": "$MODE", "runs": $RUNS, "runs_headline": $HEADLINE_RUNS, "secs": $SECS,
  "cap_pct": $CAP_PCT, "cap_period_us": $CAP_PERIOD_US,
  **({"redis": sh("$REDIS --version")} if "$REDIS" else {}),
  "nproc": sh("nproc"), "cpu": cpu + " (" + sh("lscpu | sed -n 's/^Hypervisor vendor: *//p'") + " guest)",
  "kernel": platform.release(), "weir_commit": os.environ.get("BENCH_WEIR_COMMIT") or sh("cd $REPO && git rev-parse --short HEAD") + (" + uncommitted changes" if sh("cd $REPO && git status --porcelain -- crates Cargo.toml Cargo.lock") else ""),
  "nginx": sh("$NGINX -v 2>&1"), "wrk": sh("wrk -v 2>&1 | head -1"), "h2load": sh("h2load --version"),
  "rustc": sh("rustc --version"), "pinning": "$PINNING", "priority": "$PRIO",
}, open(sys.argv[1], "w"), indent=1)
EOF

# ---------------------------------------------------------------- helpers
wait_port() { # wait_port PORT [secs]
  local i
  for i in $(seq $((${2:-10} * 50))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.02
  done
  echo "port $1 did not open" >&2; return 1
}
nginx_pids() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }

start_nginx() { # start_nginx NAME -> sets NPID
  "${CAP_NGINX[@]}" $PROXY "$NGINX" -c "$W/$1.conf" -p "$W/" -e "$W/$1.error.log" &
  NPID=$!; PIDS+=("$NPID")
}
start_weir() { # start_weir CONFIG -> sets WPID
  "${CAP_WEIR[@]}" $PROXY "$WEIR" --log-format json run -c "$W/$1.yaml" >"$W/$1.stdout" 2>"$W/$1.stderr" &
  WPID=$!; PIDS+=("$WPID")
}

# Scenario acap holds each proxy to CAP_PCT% of a core with a CFS bandwidth
# quota, so that the proxy, not the shared load-generator core, bounds req/s.
# Each proxy gets its own cgroup under CAP_CG (v2 `cpu.max`, or v1
# `cpu.cfs_quota_us`); CAP_WEIR / CAP_NGINX prefix their commands while acap
# starts them.
CAP_CG="" CAP_WEIR=() CAP_NGINX=()
cap_group() { # cap_group DIR: create one cgroup with the quota
  mkdir "$1" 2>/dev/null || return 1
  if [ -f "$1/cpu.max" ]; then
    echo "$((CAP_PERIOD_US * CAP_PCT / 100)) $CAP_PERIOD_US" > "$1/cpu.max"
  else
    echo "$CAP_PERIOD_US" > "$1/cpu.cfs_period_us" && echo "$((CAP_PERIOD_US * CAP_PCT / 100))" > "$1/cpu.cfs_quota_us"
  fi 2>/dev/null
}
cap_remove() {
  [ -z "$CAP_CG" ] || rmdir "$CAP_CG/weir" "$CAP_CG/nginx" "$CAP_CG" 2>/dev/null || true
  CAP_CG=""
}
cap_setup() { # cap_setup: create the cgroups once; false without a usable CPU controller
  [ -z "$CAP_CG" ] || return 0
  local root
  if grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    root=/sys/fs/cgroup
    echo +cpu > "$root/cgroup.subtree_control" 2>/dev/null || true
  elif [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    root=/sys/fs/cgroup/cpu
  else
    return 1
  fi
  CAP_CG=$root/weir-bench-$$
  mkdir "$CAP_CG" 2>/dev/null || { CAP_CG=""; return 1; }
  # A cgroup competes with the processes beside it by its weight, not by
  # its members' nice values: the highest, as the suite's processes have.
  if [ "$PRIORITY" = 1 ]; then
    if [ -f "$CAP_CG/cpu.weight" ]; then echo 10000 > "$CAP_CG/cpu.weight"; else echo 262144 > "$CAP_CG/cpu.shares"; fi 2>/dev/null || true
  fi
  [ ! -f "$CAP_CG/cgroup.subtree_control" ] || echo +cpu > "$CAP_CG/cgroup.subtree_control" 2>/dev/null || true
  cap_group "$CAP_CG/weir" && cap_group "$CAP_CG/nginx" && return 0
  cap_remove
  return 1
}

url_for() { # url_for SCENARIO TARGET
  local port
  case "$2" in weir) port=$WEIR_PORT ;; weir-a | weir-a0) port=$WEIR_AREF_PORT ;; *) port=$NGINX_PORT ;; esac
  case "$1" in
    e) [ "$2" = weir ] && port=19443 || port=18443; echo "https://localhost:$port/" ;;
    b) echo "http://127.0.0.1:$port/api/p5/x" ;;
    d16k) echo "http://127.0.0.1:$port/16k" ;;
    d1m) echo "http://127.0.0.1:$port/1m" ;;
    *) echo "http://127.0.0.1:$port/" ;;
  esac
}
WEIR_PORT=19080 NGINX_PORT=18080 WEIR_AREF_PORT=19082

# host_snapshot: busy and total jiffies of the load-generator core and of the
# proxy core (/proc/stat; all CPUs when unpinned), and the TCP segments the
# host has sent (/proc/net/snmp). awk, not Python: the snapshots bracket the
# load generator tightly, so start-up time does not count as idle.
host_snapshot() {
  awk -v l="cpu$LOAD_CPU" -v p="cpu$PROXY_CPU" '
    FILENAME == "/proc/stat" && ($1 == l || $1 == p) {
      busy = $2 + $3 + $4 + $7 + $8 + $9; total = busy + $5 + $6
      if ($1 == l) { lb = busy; lt = total }
      if ($1 == p) { pb = busy; pt = total }
    }
    FILENAME == "/proc/net/snmp" && $1 == "Tcp:" {
      if (!col) { for (i = 2; i <= NF; i++) if ($i == "OutSegs") col = i } else segs = $col
    }
    END { printf "%.0f %.0f %.0f %.0f %.0f\n", lb, lt, pb, pt, segs }' /proc/stat /proc/net/snmp
}

# req_headers SCENARIO: sets HDR to the scenario's request fields as `-H field`
# pairs (bench.py request_headers: b's Host, p's API key and Origin, the
# jwt scenarios' tokens).
req_headers() {
  local l
  HDR=()
  while IFS= read -r l; do [ -z "$l" ] || HDR+=(-H "$l"); done < <($PY headers "$1" "$W")
}

# wrk_script SCENARIO: the wrk script a scenario runs: wrk-report.lua, and
# for (u) wrk-upload.lua's chunked POST after it, in one file under $W.
wrk_script() {
  if [ "$1" = u ]; then
    [ -f "$W/wrk-u.lua" ] || cat "$B/wrk-report.lua" "$B/wrk-upload.lua" > "$W/wrk-u.lua"
    echo "$W/wrk-u.lua"
  else
    echo "$B/wrk-report.lua"
  fi
}

measure() { # measure SCENARIO TARGET RUN SECS [record=1]
  local scn=$1 tgt=$2 run=$3 secs=$4 rec=${5:-1} pids url c0 c1 h0 h1 out hdr=()
  case "$tgt" in weir) pids=$WPID ;; weir-a | weir-a0) pids=$APID ;; *) pids=$(nginx_pids "$NPID") ;; esac
  url=$(url_for "$scn" "$tgt")
  req_headers "$scn"; hdr=(${HDR[@]+"${HDR[@]}"})
  out=$W/out-$scn-$tgt-$run.txt
  c0=$($PY cpu $pids)
  h0=$(host_snapshot)
  if [ "$scn" = f ]; then
    $LOAD h2load -t1 -c64 -m10 -D "$secs" --log-file="$W/h2-$scn-$tgt-$run.log" "$url" >"$out" 2>&1 || true
  else
    $LOAD wrk -t1 -c64 -d"${secs}s" --latency -s "$(wrk_script "$scn")" ${hdr[@]+"${hdr[@]}"} "$url" >"$out" 2>&1 || true
  fi
  h1=$(host_snapshot)
  c1=$($PY cpu $pids)
  [ "$rec" = 1 ] || return 0
  if [ "$run" = 1 ]; then
    if [ "$scn" = f ]; then
      raw "\$ $LOAD h2load -t1 -c64 -m10 -D $secs --log-file=h2.log $url    # $tgt"
    else
      raw "\$ $LOAD wrk -t1 -c64 -d${secs}s --latency -s $([ "$scn" = u ] && echo "bench/wrk-report.lua+bench/wrk-upload.lua" || echo bench/wrk-report.lua) ${hdr[*]} $url    # $tgt"
    fi
    grep -v '^JSON' "$out" | sed -e '/^progress:/d' -e '/^spawning/d' -e '/^starting benchmark/d' -e '/^Application protocol/d' >> "$RAW"; raw ""
  fi
  if [ "$scn" = f ]; then
    $PY h2-record --scenario "$scn" --target "$tgt" --run "$run" --output "$out" --log "$W/h2-$scn-$tgt-$run.log" \
      --secs "$secs" --cpu-before "$c0" --cpu-after "$c1" --rss-kb "$($PY rss $pids)" --results "$RES/runs.jsonl" \
      --host-before "$h0" --host-after "$h1"
    rm -f "$W/h2-$scn-$tgt-$run.log"
  else
    $PY wrk-record --scenario "$scn" --target "$tgt" --run "$run" --output "$out" \
      --cpu-before "$c0" --cpu-after "$c1" --rss-kb "$($PY rss $pids)" --results "$RES/runs.jsonl" \
      --host-before "$h0" --host-after "$h1" || { echo "wrk failed:"; cat "$out"; } >&2
  fi
}

check_weir_log() { # check_weir_log NAME: note warnings/errors weir logged
  local n
  n=$(grep -c -E '"level":"(WARN|ERROR)"' "$W/$1.stderr" || true)
  if [ "$n" != 0 ]; then
    raw "weir ($1) logged $n WARN/ERROR lines; first ones:"
    grep -E '"level":"(WARN|ERROR)"' "$W/$1.stderr" | head -5 >> "$RAW"
    echo "- weir \`$1\`: $n WARN/ERROR log lines (see raw output)." >> "$NOTES"
  fi
}

# ---------------------------------------------------------------- backend
log "backend nginx on 127.0.0.1:18100-18199"
$LOAD "$NGINX" -c "$W/backend.conf" -p "$W/" -e "$W/backend.error.log" &
BPID=$!; PIDS+=("$BPID")
wait_port 18100
wait_port 18199

# ---------------------------------------------------------------- redis (lr)
# On the load generator's core, like the backend: what it costs per request
# is not weir's, and lr's figure is weir's own CPU.
RPID=""
if [ -n "$REDIS" ]; then
  log "redis-server on 127.0.0.1:$REDIS_PORT (scenario lr)"
  $LOAD "$REDIS" --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$W" --logfile "$W/redis.log" --daemonize no &
  RPID=$!; PIDS+=("$RPID")
  if wait_port "$REDIS_PORT" && kill -0 "$RPID" 2>/dev/null; then
    raw "redis-server for (lr): $("$REDIS" --version), 127.0.0.1:$REDIS_PORT, --save '' --appendonly no, ${LOAD:-not pinned}"
    raw ""
  else
    log "lr: redis-server did not start (see $W/redis.log); scenario lr skipped"
    echo "- lr skipped: redis-server did not start on 127.0.0.1:$REDIS_PORT: $(tail -1 "$W/redis.log" 2>/dev/null)" >> "$NOTES"
    stop "$RPID"; RPID=""
  fi
fi

# ---------------------------------------------------------------- throughput scenarios
for scn in a a0 acap b c d16k d1m e f p pcap jhs jrs lc lr lq lqcap u; do
  want "$scn" || continue
  [ "$scn" != lr ] || [ -n "$RPID" ] || continue  # no redis-server: noted above
  log "scenario $scn"
  FPID=""
  # nginx has no JWT verification (it would need njs or a third-party
  # module): the jwt scenarios run weir only, against weir without plugins;
  # so do lc and lr (APISIX's benchmark route against the same route
  # without plugins).
  NG=nginx
  case "$scn" in jhs | jrs | lc | lr) NG="" ;; esac
  if [ "$scn" = acap ] || [ "$scn" = pcap ] || [ "$scn" = lqcap ]; then
    if ! cap_setup; then
      log "$scn: no usable CPU cgroup controller here (needs root and cgroup v1 cpu or v2 cpu.max); skipped"
      echo "- $scn skipped: no usable CPU cgroup controller on this machine." >> "$NOTES"
      continue
    fi
    CAP_WEIR=(sh -c 'echo $$ > "$0" && exec "$@"' "$CAP_CG/weir/cgroup.procs")
    CAP_NGINX=(sh -c 'echo $$ > "$0" && exec "$@"' "$CAP_CG/nginx/cgroup.procs")
  fi
  if [ "$scn" = c ]; then
    $LOAD "$FAKE" --port 17000 --services 1 --endpoints 100 --backend-ports 18100-18199 >"$W/fake-c.out" 2>&1 &
    FPID=$!; PIDS+=("$FPID")
    wait_port 17000
    for i in $(seq 100); do grep -q LOADED "$W/fake-c.out" && break; sleep 0.05; done
  fi
  start_weir "weir-$scn"
  NPID=""
  [ -z "$NG" ] || start_nginx "nginx-$scn"
  CAP_WEIR=() CAP_NGINX=()
  $PY wait-ready 127.0.0.1:19090/status/ready --timeout 30 >/dev/null
  if [ "$scn" = e ]; then wait_port 19443; wait_port 18443; else wait_port $WEIR_PORT; [ -z "$NG" ] || wait_port $NGINX_PORT; fi
  # (b) and (c) are compared with (a), and the plugin scenarios (p, jhs,
  # jrs, lc, lr) with a0: a second weir on that config takes turns with
  # them, so the ratio does not straddle minutes of host drift.
  APID="" REF="" REFCFG=""
  case "$scn" in
    b | c) REF=weir-a REFCFG=weir-aref ;;
    p | jhs | jrs | lc | lr) REF=weir-a0 REFCFG=weir-a0ref ;;
  esac
  if [ -n "$REF" ]; then
    WPID_SAVED=$WPID; start_weir "$REFCFG"; APID=$WPID; WPID=$WPID_SAVED
    $PY wait-ready 127.0.0.1:19092/status/ready --timeout 30 >/dev/null
    wait_port $WEIR_AREF_PORT
  fi
  # The plugin scenarios: what each proxy answers (a 401 here, or a limit's
  # refusal, would make every run an error).
  case "$scn" in
    p | pcap | jhs | jrs | lc | lr | lq | lqcap)
      req_headers "$scn"
      for tgt in weir $NG $REF; do
        port=$(url_for "$scn" "$tgt" | sed 's#^http://127.0.0.1:\([0-9]*\)/.*#\1#')
        if ! head=$($PY head "$port" "${HDR[@]}"); then
          echo "- ($scn) $tgt did not answer 200 to the scenario's request (see raw output)." >> "$NOTES"
        fi
        raw "($scn) $tgt: response head to the scenario's request (GET /):"
        raw "$head"
      done
      raw ""
      ;;
  esac
  # warm-up (not recorded): connections, pools, caches
  for tgt in weir $NG $REF; do measure "$scn" "$tgt" 0 1 0; done
  runs=$RUNS
  case "$scn" in a | a0 | acap | pcap | lqcap) runs=$HEADLINE_RUNS ;; esac
  # lr: redis-server's commands and CPU over the recorded runs (the only
  # client is weir on lr's config), for its cost per request.
  if [ "$scn" = lr ]; then rc0=$($PY redis-commands "$REDIS_PORT" || echo 0) rt0=$($PY cpu "$RPID"); fi
  for run in $(seq "$runs"); do
    if [ $((run % 2)) = 1 ]; then order="weir $NG $REF"; else order="$REF $NG weir"; fi
    for tgt in $order; do measure "$scn" "$tgt" "$run" "$SECS"; done
  done
  if [ "$scn" = lr ]; then
    rc1=$($PY redis-commands "$REDIS_PORT" || echo 0) rt1=$($PY cpu "$RPID")
    echo "{\"commands\": $((rc1 - rc0)), \"cpu_s\": $(python3 -c "import os; print(($rt1 - $rt0) / os.sysconf('SC_CLK_TCK'))"), \"port\": $REDIS_PORT}" > "$RES/redis.json"
    raw "(lr) redis-server over the recorded runs: $((rc1 - rc0)) commands (a script's own calls included), $((rt1 - rt0)) CPU ticks"
    raw "(lr) redis-server calls per command since it started: $($PY redis-commands --by-command "$REDIS_PORT" || echo '?')"
    raw ""
  fi
  [ -z "$APID" ] || stop "$APID"
  if [ "$scn" = c ]; then
    raw "access log lines: weir $(wc -l < "$W/weir-c.access.log" 2>/dev/null || echo 0), nginx $(wc -l < "$W/nginx-c.access.log" 2>/dev/null || echo 0)"
    raw "weir access log sample: $(tail -1 "$W/weir-c.access.log" 2>/dev/null)"
    raw "nginx access log sample: $(tail -1 "$W/nginx-c.access.log" 2>/dev/null)"
    raw "backend connections held open by the proxies after (c): $(ss -Htn state established '( sport >= :18100 and sport <= :18199 )' | wc -l)"
    raw ""
    rm -f "$W/weir-c.access.log" "$W/nginx-c.access.log"
  fi
  stop "$WPID"; [ -z "$NPID" ] || stop "$NPID"
  check_weir_log "weir-$scn"
  [ -z "$REF" ] || check_weir_log "$REFCFG"
  [ -z "$FPID" ] || stop "$FPID"
done

[ -z "$RPID" ] || { stop "$RPID"; RPID=""; }

# ---------------------------------------------------------------- (g) idle connections
IDLE=()
want g && IDLE+=(g g2)
want gp && IDLE+=(gp)
if [ ${#IDLE[@]} -gt 0 ]; then
  echo "{" > "$RES/idle.json"
  sep=""
  # g: HTTP/1.1 keep-alive; g2: HTTP/2 (h2c, prior knowledge); gp: HTTP/1.1
  # on (p)'s route (key-auth, ip-restriction, request-id, cors); one request each
  for g in "${IDLE[@]}"; do
    log "scenario $g: 10,000 idle $(case $g in g) echo HTTP/1.1 keep-alive ;; g2) echo HTTP/2 ;; gp) echo HTTP/1.1 keep-alive, plugin route ;; esac) connections"
    start_weir "weir-$g"
    start_nginx "nginx-$g"
    $PY wait-ready 127.0.0.1:19090/status/ready --timeout 30 >/dev/null
    wait_port $NGINX_PORT
    if [ "$g" != g2 ]; then measure "$g" weir 0 1 0; measure "$g" nginx 0 1 0; fi
    req_headers "$g"
    for tgt in weir nginx; do
      if [ "$tgt" = weir ]; then port=$WEIR_PORT pids=$WPID; else port=$NGINX_PORT pids=$(nginx_pids "$NPID"); fi
      key=$tgt h2=()
      if [ "$g" = g2 ]; then key=$tgt-h2 h2=(--h2); fi
      if [ "$g" = gp ]; then key=$tgt-p; fi
      sleep 1
      before=$($PY rss $pids)
      $LOAD $PY idle-conns --port "$port" --n 10000 --hold 8 ${h2[@]+"${h2[@]}"} ${HDR[@]+"${HDR[@]}"} >"$W/idle-$key.out" 2>&1 &
      IPID=$!; PIDS+=("$IPID")
      for i in $(seq 600); do grep -q HELD "$W/idle-$key.out" && break; sleep 0.1; done
      sleep 2
      after=$($PY rss $pids)
      wait "$IPID" || true
      raw "($g) $tgt: $(tr '\n' ' ' < "$W/idle-$key.out") rss_before_kb=$before rss_after_kb=$after"
      json=$(tail -1 "$W/idle-$key.out")
      python3 - "$json" "$before" "$after" "$key" "$sep" >> "$RES/idle.json" <<'EOF'
import json, sys
d = json.loads(sys.argv[1]); b, a = int(sys.argv[2]), int(sys.argv[3])
d.update(rss_before_kb=b, rss_after_kb=a, per_conn_kb=(a - b) / max(d["opened"], 1))
print(sys.argv[5] + json.dumps(sys.argv[4]) + ": " + json.dumps(d))
EOF
      sep=","
    done
    stop "$WPID"; stop "$NPID"
    check_weir_log "weir-$g"
  done
  echo "}" >> "$RES/idle.json"
fi

# ---------------------------------------------------------------- default config idle RSS
if want default; then
  log "default configuration, idle RSS"
  "$WEIR" run -c "$W/weir-default.yaml" >/dev/null 2>"$W/weir-default.stderr" &
  DPID=$!; PIDS+=("$DPID")
  $PY wait-ready 127.0.0.1:19091/status/ready --timeout 30 >/dev/null
  for i in $(seq 20); do $PY wait-ready 127.0.0.1:19081/anything --timeout 5 >/dev/null; done
  sleep 3
  rss=$($PY rss "$DPID")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$DPID/status")
  echo "{\"rss_kb\": $rss, \"threads\": $threads, \"after\": \"start, ready, 20 echo requests, 3 s idle\"}" > "$RES/default.json"
  raw "default config: VmRSS ${rss} kB, $threads threads"
  stop "$DPID"
fi

# ---------------------------------------------------------------- discovery scale
if want scale; then
  log "discovery scale: 10,000 services x 10 endpoints"
  CHURN_SECS=30
  [ "$MODE" = full ] || CHURN_SECS=15
  $LOAD "$FAKE" --port 17001 --services 10000 --endpoints 10 --backend-ports 18100-18199 \
    --marker-ports 18198,18199 --marker-every-ms 500 --churn-rate 1000 --churn-secs "$CHURN_SECS" \
    --churn-trigger "$W/churn.go" --events "$W/events.txt" >"$W/fake-scale.out" 2>&1 &
  FPID=$!; PIDS+=("$FPID")
  for i in $(seq 600); do grep -q LOADED "$W/fake-scale.out" && break; sleep 0.1; done
  raw "fake API server: $(grep LOADED "$W/fake-scale.out")"
  echo "{" > "$RES/scale.json"
  for cfg in scale1 scale; do
    key=$([ $cfg = scale1 ] && echo routes1 || echo routes10k)
    since=$(date +%s.%N)
    start_weir "weir-$cfg"
    ready_ms=$($PY wait-ready 127.0.0.1:19090/status/ready --since "$since" --timeout 120 --interval 0.005 || echo timeout)
    sleep 2
    rss=$($PY rss "$WPID")
    raw "weir-$cfg: ready after ${ready_ms} ms, VmRSS ${rss} kB after sync"
    if [ $cfg = scale1 ]; then
      echo "\"$key\": {\"ready_ms\": $ready_ms, \"rss_kb\": $rss}," >> "$RES/scale.json"
      stop "$WPID"; check_weir_log "weir-$cfg"
      continue
    fi
    # churn while traffic flows
    touch "$W/churn.go"
    $LOAD $PY probe --port $WEIR_PORT --host marker.scale.test --secs $((CHURN_SECS + 2)) --out "$W/probe.txt" >"$W/probe.out" 2>&1 &
    PRPID=$!; PIDS+=("$PRPID")
    c0=$($PY cpu "$WPID")
    $LOAD wrk -t1 -c64 -d"${CHURN_SECS}s" --latency -s "$B/wrk-report.lua" -H "Host: s5000.scale.test" \
      "http://127.0.0.1:$WEIR_PORT/" >"$W/churn-wrk.txt" 2>&1 || true
    c1=$($PY cpu "$WPID")
    wait "$PRPID" || true
    sleep 1
    rss2=$($PY rss "$WPID")
    raw "\$ $LOAD wrk -t1 -c64 -d${CHURN_SECS}s --latency -s bench/wrk-report.lua -H 'Host: s5000.scale.test' http://127.0.0.1:$WEIR_PORT/   # during churn"
    grep -v '^JSON' "$W/churn-wrk.txt" >> "$RAW"
    raw "fake API server: $(grep CHURN "$W/fake-scale.out" | tr '\n' ' ')"
    raw "weir CPU during churn: $(( c1 - c0 )) ticks over ${CHURN_SECS} s; VmRSS after churn ${rss2} kB"
    python3 - "$RES/scale.json" "$W" "$ready_ms" "$rss" "$rss2" "$CHURN_SECS" "$B" >> "$RES/scale.json" <<'EOF'
import json, sys, re
sys.path.insert(0, sys.argv[7])
import bench
_, _, W, ready, rss, rss2, secs, _ = sys.argv
rec = {}
for l in open(f"{W}/churn-wrk.txt"):
    if l.startswith("JSON "): rec = json.loads(l[5:])
fake = open(f"{W}/fake-scale.out").read()
m = re.search(r"applied=(\d+)", fake)
try:
    delays, missed = bench.propagation(f"{W}/events.txt", f"{W}/probe.txt")
except OSError:
    delays, missed = [], None
churn = {"rate": 1000, "secs": int(secs), "applied": int(m.group(1)) if m else None,
         "rps": rec.get("requests", 0) / max(rec.get("duration_us", 1) / 1e6, 1e-9),
         "p99_us": rec.get("p99", 0),
         "errors": {k: v for k, v in rec.items() if k.startswith("errors_")},
         "delays_ms": [round(d, 2) for d in delays], "missed": missed,
         "probe": open(f"{W}/probe.out").read().strip()}
print('"routes10k": ' + json.dumps({"ready_ms": int(ready) if ready.isdigit() else ready, "rss_kb": int(rss), "rss_after_churn_kb": int(rss2)}) + ',')
print('"churn": ' + json.dumps(churn) + "\n}")
EOF
    stop "$WPID"; check_weir_log "weir-$cfg"
  done
  stop "$FPID"
fi

# ---------------------------------------------------------------- Admin API propagation
# A route written through the Admin API is timed from sending the PUT to the
# proxy's first answer from it, while wrk keeps a steady load on another
# route (its errors show whether any request failed through the changes):
# with the file provider (a state file); with config_provider: etcd and 10
# routes in etcd; and with 10,000 routes in etcd, whose start-up (time to
# ready, RSS) is measured too. etcd (Debian's etcd-server) runs on a free
# port with its data in the temp dir, pinned with the load generator, and is
# stopped at the end; without it the etcd sub-runs are skipped with a note.
if want admin; then
  WEIR_CONTROL=19090 ADMIN_PORT=19180 ADMIN_N=$([ "$MODE" = full ] && echo 300 || echo 50)
  ADMIN_N10K=$([ "$MODE" = full ] && echo 50 || echo 20)
  ADMIN_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  admin_yaml() { # admin_yaml NAME DEPLOYMENT-LINES ADMIN-LINES: weir with the Admin API and a /steady route
    cat > "$W/$1.yaml" <<EOF
gateway:
  workers: 1
  listeners: [{address: "127.0.0.1:$WEIR_PORT"}]
  control: {address: "127.0.0.1:$WEIR_CONTROL"}
  access_log: {enabled: false}
deployment:
$2
  admin:
    admin_listen: {ip: 127.0.0.1, port: $ADMIN_PORT}
    admin_key: [{name: bench, key: "$ADMIN_KEY", role: admin}]
$3
routes:
  - id: steady
    uri: /steady
    upstream: {type: roundrobin, nodes: {"127.0.0.1:18100": 1}}
EOF
  }
  admin_run() { # admin_run TAG WRITES WRK_SECS [paced]: WRITES PUTs timed to live, under steady load
    local tag=$1 n=$2 secs=$3 script=$B/wrk-report.lua
    if [ "${4:-}" = paced ]; then
      script=$W/wrk-paced.lua
      cat "$B/wrk-report.lua" "$B/wrk-paced.lua" > "$script"
    fi
    $LOAD wrk -t1 -c16 -d"${secs}s" --latency -s "$script" \
      "http://127.0.0.1:$WEIR_PORT/steady" >"$W/admin-$tag-wrk.txt" 2>&1 &
    WRKPID=$!; PIDS+=("$WRKPID")
    sleep 1  # let wrk's connections open before the first write
    $LOAD python3 "$B/admin.py" propagation --admin-port "$ADMIN_PORT" --proxy-port "$WEIR_PORT" \
      --key "$ADMIN_KEY" --upstream 127.0.0.1:18100 --count "$n" --first "${ADMIN_FIRST:-0}" --timeout 10 \
      >"$W/admin-$tag-prop.json" 2>"$W/admin-$tag-prop.err" \
      || echo "admin propagation probe ($tag) failed: $(cat "$W/admin-$tag-prop.err")" >&2
    wait "$WRKPID" || true
    raw "\$ bench/admin.py propagation --count $n --first ${ADMIN_FIRST:-0}   # $tag, while wrk -t1 -c16 on /steady$([ "${4:-}" = paced ] && echo ' (paced: 2 ms between requests per connection)')"
    cat "$W/admin-$tag-prop.json" "$W/admin-$tag-prop.err" >> "$RAW"
    grep -v '^JSON' "$W/admin-$tag-wrk.txt" >> "$RAW"
  }

  log "Admin API: change -> live on the proxy (file provider)"
  admin_yaml weir-admin "" "    state_file: $W/admin-state.json"
  start_weir weir-admin
  $PY wait-ready "127.0.0.1:$WEIR_CONTROL/status/ready" --timeout 30 >/dev/null
  wait_port "$ADMIN_PORT"
  admin_run file "$ADMIN_N" $((ADMIN_N / 25 + 5))
  # The same with the steady load paced (about 8,000 req/s: the proxy's
  # core mostly free), new routes (the ids go on from the first run's).
  ADMIN_FIRST=$ADMIN_N admin_run file-paced "$ADMIN_N" $((ADMIN_N / 25 + 5)) paced
  stop "$WPID"; check_weir_log weir-admin

  ETCD=$(command -v etcd || true) ETCD_SKIPPED=""
  free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  start_etcd() { # start_etcd: a new etcd, empty data dir, free ports -> EPID, ETCD_PORT
    local peer; ETCD_PORT=$(free_port); peer=$(free_port)
    rm -rf "$W/etcd-data"
    $LOAD "$ETCD" --name bench --data-dir "$W/etcd-data" \
      --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "bench=http://127.0.0.1:$peer" --initial-cluster-state new \
      --logger zap --log-level error >"$W/etcd.log" 2>&1 &
    EPID=$!; PIDS+=("$EPID")
    $PY wait-ready "127.0.0.1:$ETCD_PORT/health" --timeout 30 >/dev/null
  }
  etcd_block() { printf '  role_traditional: {config_provider: etcd}\n  etcd: {host: ["http://127.0.0.1:%s"], timeout: 5}' "$1"; }
  if [ -z "$ETCD" ]; then
    ETCD_SKIPPED="etcd is missing (apt-get install -y etcd-server)"
    log "admin: $ETCD_SKIPPED; the etcd sub-runs are skipped"
    echo "- admin, etcd sub-runs skipped: $ETCD_SKIPPED." >> "$NOTES"
  else
    log "Admin API: change -> live on the proxy (config_provider: etcd, 10 routes)"
    start_etcd
    $LOAD python3 "$B/admin.py" seed-etcd --etcd-port "$ETCD_PORT" --routes 10 --upstream 127.0.0.1:18100 >/dev/null
    admin_yaml weir-admin-etcd "$(etcd_block "$ETCD_PORT")" ""
    start_weir weir-admin-etcd
    $PY wait-ready "127.0.0.1:$WEIR_CONTROL/status/ready" --timeout 30 >/dev/null
    wait_port "$ADMIN_PORT"
    admin_run etcd10 "$ADMIN_N" $((ADMIN_N / 25 + 5))
    ADMIN_FIRST=$ADMIN_N admin_run etcd10-paced "$ADMIN_N" $((ADMIN_N / 25 + 5)) paced
    stop "$WPID"; check_weir_log weir-admin-etcd
    stop "$EPID"

    log "Admin API: start-up and change -> live with 10,000 routes in etcd"
    start_etcd
    $LOAD python3 "$B/admin.py" seed-etcd --etcd-port "$ETCD_PORT" --routes 10000 --upstream 127.0.0.1:18100 >/dev/null
    admin_yaml weir-admin-etcd10k "$(etcd_block "$ETCD_PORT")" ""
    since=$(date +%s.%N)
    start_weir weir-admin-etcd10k
    ETCD_READY_MS=$($PY wait-ready "127.0.0.1:$WEIR_CONTROL/status/ready" --since "$since" --timeout 120 --interval 0.005 || echo timeout)
    sleep 2  # RSS once settled, as the discovery scale run
    ETCD_RSS=$($PY rss "$WPID")
    raw "weir-admin-etcd10k: ready after ${ETCD_READY_MS} ms with 10,000 routes in etcd, VmRSS ${ETCD_RSS} kB"
    wait_port "$ADMIN_PORT"
    admin_run etcd10k "$ADMIN_N10K" $((ADMIN_N10K + 5))
    stop "$WPID"; check_weir_log weir-admin-etcd10k
    stop "$EPID"
  fi
  python3 - "$W" "$ADMIN_N" "$ADMIN_N10K" "${ETCD_READY_MS:-}" "${ETCD_RSS:-}" "$ETCD_SKIPPED" > "$RES/admin.json" <<'PYEOF'
import json, sys
W, n, n10k, ready, rss, skipped = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
def run(tag, writes):
    rec = {}
    try:
        for l in open(f"{W}/admin-{tag}-wrk.txt"):
            if l.startswith("JSON "): rec = json.loads(l[5:])
    except OSError:
        return None
    try:
        prop = json.load(open(f"{W}/admin-{tag}-prop.json"))
    except (OSError, ValueError):
        prop = None
    return {"prop": prop, "writes": writes,
            "steady": {"requests": rec.get("requests", 0),
                       "errors": {k: v for k, v in rec.items() if k.startswith("errors_")}}}
file = run("file", n) or {}
out = {"file": file.get("prop"), "writes": n, "steady": file.get("steady", {}),
       "file_paced": run("file-paced", n)}
if skipped:
    out["etcd_skipped"] = skipped
else:
    big = run("etcd10k", n10k) or {}
    big.update(ready_ms=int(ready) if ready.isdigit() else ready,
               rss_kb=int(rss) if rss.isdigit() else None)
    out["etcd"] = {"routes10": run("etcd10", n), "routes10_paced": run("etcd10-paced", n), "routes10k": big}
print(json.dumps(out))
PYEOF
fi

# ---------------------------------------------------------------- profile
if [ "$PROFILE" = 1 ] && want a && command -v perf >/dev/null; then
  log "profile: perf record on weir, scenario a without busy polling (a0)"
  PSECS=$([ "$MODE" = full ] && echo 10 || echo 5)
  start_weir weir-a0
  $PY wait-ready 127.0.0.1:19090/status/ready --timeout 30 >/dev/null
  measure a weir 0 1 0
  $LOAD wrk -t1 -c64 -d"$((PSECS + 2))s" "http://127.0.0.1:$WEIR_PORT/" >"$W/prof-wrk.txt" 2>&1 &
  PWPID=$!; PIDS+=("$PWPID")
  sleep 1
  if perf record -e cpu-clock -F 4999 -p "$WPID" -o "$W/perf.data" -- sleep "$PSECS" >"$W/perf-record.out" 2>&1; then
    wait "$PWPID" || true
    {
      echo "\`perf record -e cpu-clock -F 4999 -p <weir>\` for $PSECS s during \`wrk -t1 -c64\` on scenario (a) with weir's defaults (a0: no busy polling, so the profile shows work, not spinning)"
      echo "(hardware counters are not available in this VM, so cpu-clock sampling; self time; kernel"
      echo "symbols included). Top 10 symbols:"
      echo
      echo '```'
      perf report -i "$W/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
        | grep -E '^ +[0-9.]+%' | head -10 | cut -c1-160
      echo '```'
      echo
      echo "By shared object:"
      echo
      echo '```'
      perf report -i "$W/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -8
      echo '```'
      echo
      echo "Top 25 symbols in weir's own code and its crates (user space only):"
      echo
      echo '```'
      perf report -i "$W/perf.data" --no-children --sort symbol --dsos weir --stdio 2>/dev/null \
        | grep -E '^ +[0-9.]+%' | head -25 | cut -c1-160
      echo '```'
    } > "$RES/profile.txt" || true  # (head closes pipes early: SIGPIPE is expected)
  else
    wait "$PWPID" || true
    echo "perf record failed: $(tail -3 "$W/perf-record.out")" > "$RES/profile.txt"
  fi
  # The load-generator core under each proxy: when it is the busy one, it
  # bounds req/s, and its profile shows what each proxy leaves it to do.
  if [ -n "$LOAD_CPU" ]; then
    log "profile: perf record on the load-generator core (CPU $LOAD_CPU), weir (a0) and nginx (a)"
    start_nginx nginx-a
    wait_port $NGINX_PORT
    for tgt in weir nginx; do
      measure a "$tgt" 0 1 0
      $LOAD wrk -t1 -c64 -d"$((PSECS + 2))s" "$(url_for a "$tgt")" >"$W/lc-wrk-$tgt.txt" 2>&1 &
      PWPID=$!; PIDS+=("$PWPID")
      sleep 1
      if perf record -a -C "$LOAD_CPU" -e cpu-clock -F 4999 -o "$W/lc-$tgt.data" -- sleep "$PSECS" >"$W/lc-record.out" 2>&1; then
        { perf report -i "$W/lc-$tgt.data" --no-children --sort comm,dso --stdio 2>/dev/null \
            | grep -E '^ +[0-9.]+%' > "$RES/loadcore-$tgt-dso.txt"; } || true
        { perf report -i "$W/lc-$tgt.data" --no-children --sort symbol --stdio 2>/dev/null \
            | grep -E '^ +[0-9.]+%' | head -60 > "$RES/loadcore-$tgt-sym.txt"; } || true
      fi
      wait "$PWPID" || true
      awk '/Requests\/sec/{print $2}' "$W/lc-wrk-$tgt.txt" > "$RES/loadcore-$tgt-rps.txt"
    done
    echo "$PSECS" > "$RES/loadcore-secs.txt"
    stop "$NPID"
  fi
  stop "$WPID"
fi

# ---------------------------------------------------------------- report
stop "$BPID"
if [ -n "$DOC" ]; then
  $PY report --results-dir "$RES" --out "$DOC"
  log "wrote ${DOC#$REPO/} and bench/results/"
else
  $PY report --results-dir "$RES" --out "$RES/performance.md"
  log "smoke: wrote $RES/performance.md (docs untouched)"
fi
# Smoke gate: every recorded run must have served requests without errors
# (no runs file when only non-throughput scenarios ran, e.g. --only scale).
python3 - "$RES/runs.jsonl" <<'EOF'
import json, os, sys
if not os.path.exists(sys.argv[1]):
    sys.exit(0)
bad = [r for r in map(json.loads, open(sys.argv[1])) if r["rps"] <= 0 or any(r["errors"].values())]
for r in bad:
    print(f"FAILED RUN: {r['scenario']} {r['target']} run {r['run']}: rps {r['rps']:.0f} errors {r['errors']}", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
