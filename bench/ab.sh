#!/usr/bin/env bash
# Two weir binaries on one scenario's configuration, taking turns: the way
# to compare builds on a host whose throughput drifts by ±10% between runs
# minutes apart (docs/benchmarks/README.md). Each pair runs both binaries
# back to back (order alternating), pinned as bench/run.sh pins them: the
# load generator and the backend on CPU 0, the proxies on CPU 1, all at
# nice -20 (run as root).
#
#   bench/run.sh --keep --only a ...    # once, for the generated configs (prints the kept dir)
#   bench/ab.sh DIR SCENARIO PAIRS SECS OLD-BINARY NEW-BINARY
#
# SCENARIO is one whose weir config is DIR/weir-SCENARIO.yaml and that runs
# plain HTTP/1.1 with wrk (a, a0, b, c, d16k, d1m). Prints each run (req/s,
# weir's CPU µs per request from /proc) and the medians of the pairs' ratios.
# Binds 127.0.0.1 (the backend's 18100-18199, weir on 19080/19081 with
# control 19090/19091, c's fake API server on 17000); stops what it started.
set -euo pipefail
[ $# = 6 ] || { sed -n '2,18p' "$0"; exit 2; }
W=$1 S=$2 PAIRS=$3 SECS=$4 OLD=$5 NEW=$6
REPO=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$W/weir-$S.yaml" ] || { echo "no $W/weir-$S.yaml (bench/run.sh --keep first)" >&2; exit 2; }
O=$(mktemp -d /tmp/weir-ab.XXXXXX)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
HDR=() URLPATH=/
case "$S" in
  b) HDR=(-H "Host: h50.bench.test") URLPATH=/api/p5/x ;;
  d16k) URLPATH=/16k ;;
  d1m) URLPATH=/1m ;;
esac
taskset -c 0 nice -n -20 nginx -c "$W/backend.conf" -p "$W/" -e "$O/backend.err" &
if [ "$S" = c ]; then
  FAKE=${CARGO_TARGET_DIR:-$REPO/bench/fake-apiserver/target}/release/fake-apiserver
  taskset -c 0 nice -n -20 "$FAKE" --port 17000 --services 1 --endpoints 100 --backend-ports 18100-18199 >"$O/fake.out" 2>&1 &
  for _ in $(seq 300); do grep -q LOADED "$O/fake.out" && break; sleep 0.1; done
fi
for t in old new; do
  if [ $t = old ]; then bin=$OLD p=19080 c=19090; else bin=$NEW p=19081 c=19091; fi
  sed -e "s/127.0.0.1:19080/127.0.0.1:$p/; s/127.0.0.1:19090/127.0.0.1:$c/; s#path: [^,]*access.log#path: $O/$t.access.log#" \
    "$W/weir-$S.yaml" > "$O/$t.yaml"
  taskset -c 1 nice -n -20 "$bin" run -c "$O/$t.yaml" >"$O/$t.out" 2>&1 &
  echo $! > "$O/$t.pid"
  python3 "$REPO/bench/bench.py" wait-ready "127.0.0.1:$c/status/ready" --timeout 30 >/dev/null
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # clock ticks (100 per second)
for i in $(seq "$PAIRS"); do
  if [ $((i % 2)) = 1 ]; then order="old new"; else order="new old"; fi
  for t in $order; do
    if [ $t = old ]; then p=19080; else p=19081; fi
    pid=$(cat "$O/$t.pid"); c0=$(cpu "$pid")
    taskset -c 0 nice -n -20 wrk -t1 -c64 -d"${SECS}s" ${HDR[@]+"${HDR[@]}"} "http://127.0.0.1:$p$URLPATH" >"$O/wrk.txt" 2>&1
    c1=$(cpu "$pid")
    n=$(awk '/requests in/ {print $1}' "$O/wrk.txt")
    echo "$S $t $i $(awk '/Requests\/sec/ {print $2}' "$O/wrk.txt") $(python3 -c "print(round(($c1 - $c0) * 1e4 / $n, 2))") $(awk '/Non-2xx/ {print $NF}' "$O/wrk.txt")"
  done
done | tee "$O/runs.txt" | awk '{printf "%-5s %-4s pair %-3s %10.0f req/s  %6.2f µs/req  non-2xx %s\n", $1, $2, $3, $4, $5, ($6 == "" ? 0 : $6)}'
python3 - "$O/runs.txt" <<'PY'
import statistics as st, sys
runs = {"old": [], "new": []}
for line in open(sys.argv[1]):
    f = line.split()
    runs[f[1]].append((float(f[3]), float(f[4])))
for what, k in (("req/s", 0), ("CPU µs/req", 1)):
    ratios = [n[k] / o[k] for o, n in zip(runs["old"], runs["new"])]
    print(f"new/old {what}: median of {len(ratios)} pairs {st.median(ratios):.3f} "
          f"(pairs {min(ratios):.3f}..{max(ratios):.3f}); medians old {st.median(r[k] for r in runs['old']):.2f}, "
          f"new {st.median(r[k] for r in runs['new']):.2f}")
PY
rm -rf "$O"
