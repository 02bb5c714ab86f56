#!/bin/bash
# bench/lab.sh — the latency lab's canned scenario: what edge saves in front of a web app.
#
# Origin: origin-sim with --latency 40ms --jitter 10ms (uniform, --seed 1), serving the
# items API, /resp objects and origin-sim/www under /static/. In front: edge with
# conf/bench.conf, its addresses rewritten to free loopback ports and its cache_dir to a
# private temp dir (cold at start). A few items are seeded through edge's /api/ route;
# then short checks that the routes do what the conf says (/static/ and /resp are cache
# hits the second time, /api/ never is).
# Load: build/edge-bench --compare ORIGIN EDGE, open loop at RATE req/s (the same
# offered load on both sides; latency counts from each request's intended send time),
# Zipf s=ZIPF over PATHS objects '/resp?cc=max-age%3D300&size=2048&k=%d' (2 KiB,
# cacheable 5 min), seed SEED, PHASES phases per side of DURATION each, alternating
# direct, edge, direct, edge... The edge side starts with an empty cache, so its
# figures include the cold misses; each phase draws a new sequence (seed+phase, the
# same for both sides), so later phases find the popular objects cached and miss the
# rare ones (the per-phase lines printed after the table show the phases apart).
# edge-bench's workload is one source (one URL, a list, or Zipf over one template):
# the API reads are in the checks, not in the load.
# Prints the comparison (p50..max and their reduction, hit ratio, origin offload from
# origin-sim's /_stats) and writes OUT/report.html (SVG latency chart + table) and
# OUT/report.json.
#
# Usage: bench/lab.sh [BUILD_DIR]   (make bench)
#   env: DURATION=10s PHASES=2 RATE=500 CONNS=32 THREADS=2 ZIPF=1.1 PATHS=1000 SEED=1
#        OUT=var/bench
# Default run: 4 phases x 10 s + about 2 s of setup, under a minute.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
DURATION=${DURATION:-10s}
PHASES=${PHASES:-2}
RATE=${RATE:-500}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
ZIPF=${ZIPF:-1.1}
PATHS=${PATHS:-1000}
SEED=${SEED:-1}
OUT=${OUT:-$ROOT/var/bench}
LATENCY=40ms
JITTER=10ms
TEMPLATE='/resp?cc=max-age%3D300&size=2048&k=%d'
command -v curl >/dev/null || sh "$ROOT/scripts/deps.sh" curl
for b in edge origin-sim edge-bench; do
    [ -x "$BUILD/$b" ] || { echo "lab.sh: $BUILD/$b missing: build first (make)" >&2; exit 1; }
done
# DURATION in seconds (edge-bench's forms: 500ms, 10s, 2m), for the time bound below
DUR_S=$(awk -v d="$DURATION" 'BEGIN {
    if (d ~ /^[0-9.]+ms$/) print d / 1000; else if (d ~ /^[0-9.]+s$/) print d + 0;
    else if (d ~ /^[0-9.]+m$/) print d * 60; else if (d ~ /^[0-9.]+$/) print d + 0; else print -1 }')
awk -v s="$DUR_S" 'BEGIN { exit !(s > 0) }' || { echo "lab.sh: DURATION=$DURATION: expected 500ms, 10s or 2m" >&2; exit 2; }
# edge-bench must be done by then: every phase, plus its 10 s request timeout, plus slack
BOUND=$(awk -v s="$DUR_S" -v p="$PHASES" 'BEGIN { printf "%d", 2 * p * s + 30 }')

T=$(mktemp -d /tmp/edge-lab.XXXXXX)
mkdir -p "$T/logs"
pids=""

# Every process we started (all are our children, none daemonizes) and its descendants.
tree() {
    ps -e -o pid=,ppid= | awk -v roots="$*" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
        { parent[$1] = $2 }
        END { do { more = 0; for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; more = 1 } } while (more)
              for (p in keep) if (p in parent) print p }'
}
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${s#Z}" = "$s" ]; }
cleanup() {
    set +e
    local all left p i
    all=$(tree $pids)
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
    for i in $(seq 100); do   # up to 10 s (edge drains), then SIGKILL what is left
        left=""; for p in $all; do alive "$p" && left="$left $p"; done
        [ -z "$left" ] && break; sleep 0.1
    done
    [ -n "$left" ] && { echo "lab.sh: killing leftover processes:$left" >&2; kill -KILL $left 2>/dev/null; }
    wait 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "lab.sh: $*" >&2
    for f in "$T"/logs/*; do [ -s "$f" ] && { echo "--- ${f##*/}" >&2; tail -n 5 "$f" >&2; }; done
    exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # $1 port, $2 name; up to 10 s
    for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done
    fail "$2: port $1 never opened"
}

ORIGIN=$(free_port); EDGE=$(free_port)
O="http://127.0.0.1:$ORIGIN"; E="http://127.0.0.1:$EDGE"

# --- origin
"$BUILD/origin-sim" --listen "127.0.0.1:$ORIGIN" --latency $LATENCY --jitter $JITTER --seed 1 \
    --root "$ROOT/origin-sim/www" >"$T/logs/origin-sim.log" 2>&1 & pids="$pids $!"

# --- edge: conf/bench.conf with its addresses and cache_dir made private to this run
sed -e "s#^\(listen[[:space:]]\{1,\}\)127\.0\.0\.1:8080;#\1127.0.0.1:$EDGE;#" \
    -e "s#^\([[:space:]]*server[[:space:]]\{1,\}\)127\.0\.0\.1:9000;#\1127.0.0.1:$ORIGIN;#" \
    -e "s#^\(cache_dir[[:space:]]\{1,\}\)var/bench/cache #\1$T/cache #" \
    "$ROOT/conf/bench.conf" > "$T/edge.conf"
for want in "listen 127.0.0.1:$EDGE;" "server 127.0.0.1:$ORIGIN;" "cache_dir $T/cache "; do
    grep -qF "$want" "$T/edge.conf" ||
        fail "conf/bench.conf: could not rewrite it to '$want' (it must keep 'listen 127.0.0.1:8080;', 'server 127.0.0.1:9000;' and 'cache_dir var/bench/cache ...')"
done
"$BUILD/edge" -t -c "$T/edge.conf" >"$T/logs/edge.log" 2>&1 || fail "edge rejects its conf"
"$BUILD/edge" -c "$T/edge.conf" >>"$T/logs/edge.log" 2>&1 & pids="$pids $!"
wait_port "$ORIGIN" origin-sim; wait_port "$EDGE" edge

# --- nothing of ours listens outside 127.0.0.1
if command -v ss >/dev/null; then
    ours=" $(tree $pids | tr '\n' ' ') "
    bad=$(ss -Hltnp 2>/dev/null | while read -r line; do
        for p in $(echo "$line" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
            case "$ours" in *" $p "*) case "$(echo "$line" | awk '{print $4}')" in 127.0.0.1:*) ;; *) echo "$line" ;; esac; break ;; esac
        done
    done)
    [ -z "$bad" ] || fail "listening outside 127.0.0.1: $bad"
fi

# --- seed the items API through edge, then check the routes
ITEMS="u1 u2 u3 u4 u5"
for pk in $ITEMS; do
    code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
        -d "{\"name\":\"user $pk\",\"plan\":\"free\"}" "$E/api/tables/users/items/$pk") || code=000
    case $code in 200|201) ;; *) fail "PUT $E/api/tables/users/items/$pk: status $code" ;; esac
done
cache_status() { # $1 URL -> "STATUS Cache-Status" of a GET (the second of two when $2 = twice)
    [ "${2:-}" = twice ] && curl -s --max-time 10 -o /dev/null "$1"
    curl -s --max-time 10 -D "$T/h" -o /dev/null -w '%{http_code}' "$1" || echo -n 000
    printf ' %s' "$(grep -i '^cache-status:' "$T/h" | tr -d '\r' | cut -d: -f2- | sed 's/^ *//')"
}
check() { # $1 label, $2 URL: the second GET must be a 200 and an edge hit
    local got; got=$(cache_status "$2" twice)
    case "$got" in
        "200 edge; hit"*) printf "  %-7s %-44s %s\n" "$1" "${2#$E}" "$got" ;;
        *) fail "$1 ${2#$E}: expected a 200 and 'Cache-Status: edge; hit' the second time, got: $got" ;;
    esac
}
api_count() { curl -s --max-time 5 "$O/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["by_path"]["api"])'; }
check_api() { # $1 URL: both GETs must reach the origin and neither be a hit
    local a b got; a=$(api_count); got=$(cache_status "$1" twice); b=$(api_count)
    case "$got" in
        "200 "*hit*|"200 "*HIT*) fail "api ${1#$E}: answered from the cache: $got" ;;
        "200 "*) ;;
        *) fail "api ${1#$E}: expected a 200, got: $got" ;;
    esac
    [ "$((b - a))" = 2 ] || fail "api ${1#$E}: 2 GETs through edge, $((b - a)) reached the origin (expected 2)"
    printf "  %-7s %-44s %s\n" api "${1#$E}" "200, no Cache-Status, both GETs reached the origin"
}
echo "bench/lab.sh: origin-sim --latency $LATENCY --jitter $JITTER at $O, edge (conf/bench.conf) at $E, $(nproc) cores"
echo "routes (second GET of each; $(echo $ITEMS | wc -w) items seeded with PUT /api/tables/users/items/PK):"
check static "$E/static/index.html"
check resp   "$E/resp?cc=max-age%3D300&size=2048&k=check"
check_api    "$E/api/tables/users/items/u1"
echo

# --- the comparison: edge-bench in the background (so that a signal to this script is
# handled at once, not when edge-bench is done), its table and reports kept in $T until
# it has finished cleanly: an interrupted run leaves the previous report in place.
echo "load: open loop $RATE req/s, Zipf s=$ZIPF over $PATHS objects $TEMPLATE, seed $SEED,"
echo "      $PHASES phases x $DURATION per side (direct, edge, direct, edge...), edge cache cold at start"
Q=""; [ -t 2 ] || Q=-q   # the progress line only on a terminal
timeout -k 5s "${BOUND}s" \
    "$BUILD/edge-bench" --compare "$O" "$E" --rate "$RATE" --connections "$CONNS" --threads "$THREADS" \
        --zipf "$ZIPF" --paths "$PATHS" --path-template "$TEMPLATE" --seed "$SEED" \
        --duration "$DURATION" --phases "$PHASES" $Q \
        --json "$T/report.json" --html "$T/report.html" >"$T/table.txt" </dev/null & bench=$!
pids="$pids $bench"
rc=0; wait "$bench" || rc=$?
pids=${pids% $bench}
case $rc in
    0) ;;
    124|137) fail "edge-bench did not finish within ${BOUND}s" ;;
    *) cat "$T/table.txt"; fail "edge-bench failed (exit $rc)" ;;
esac
cat "$T/table.txt"
mkdir -p "$OUT"
cp "$T/report.json" "$T/report.html" "$OUT/"
# per phase: edge's first phase starts with a cold cache; later phases draw new
# sequences and find the popular objects cached.
# edge-bench exits 0 even when requests failed: say so here.
echo
python3 - "$OUT/report.json" <<'PY' || fail "some requests failed: see the table above"
import json, sys
r = json.load(open(sys.argv[1]))
def ms(v):
    return "%.2f ms" % v if v >= 1 else "%.0f us" % (v * 1000)
print("per phase        %10s %10s %10s %10s %10s %9s" % ("requests", "p50", "p90", "p99", "max", "hit ratio"))
for x in r["phases"]:
    l = x["latency_ms"]
    hr = "-" if x["hit_ratio"] is None else "%.1f%%" % (100 * x["hit_ratio"])
    print("  %-6s %-7s %10d %10s %10s %10s %10s %9s" % (x["name"], "%d/%d" % (x["phase"], r["config"]["phases"]),
          x["requests"], ms(l["p50"]), ms(l["p90"]), ms(l["p99"]), ms(l["max"]), hr))
bad = [(x["name"], x["errors"]["total"]) for x in r["runs"] if x["errors"]["total"]]
for name, n in bad:
    print("lab.sh: %s: %d failed requests" % (name, n), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
echo
echo "report: $OUT/report.html (open it in a browser; self-contained), figures: $OUT/report.json"
