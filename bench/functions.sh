#!/bin/bash
# bench/functions.sh — what an edge function costs, same run, same edge:
#
#   hello    a route answered by the bundled `hello` function: one KV INCR in a
#            private redis-server per request (EFN_PAUSE, resumed by the reply)
#   nokv     a route answered with a function in its chain that makes no KV call
#            (`headers` editing the request, then `return 200`)
#   cached   a cache hit of a small object (route with `cache on`, warmed)
#
# Throughput: wrk, CONNS connections, THREADS threads, DURATION per run, ROUNDS
# rounds with the order rotated; medians. Target (issue 5): hello >= 50% of the
# cache hit's requests/s.
# Latency added by one KV call: edge-bench with one connection (no queueing),
# p50 of hello minus p50 of nokv. Target: < 0.3 ms.
# Cold start: a changed hello.so (new build) is put in a new function_dir and
# edge reloaded; the engine logs how long copy + dlopen + init took, and the
# first request after the reload is timed. Target: < 1 ms.
#
# Usage: bench/functions.sh [BUILD_DIR]
#   env: CONNS=64 THREADS=2 DURATION=5s ROUNDS=3 LAT_DURATION=3s
# A quick run: DURATION=2s ROUNDS=1 bench/functions.sh   (about 20 s)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
LAT_DURATION=${LAT_DURATION:-3s}
command -v wrk >/dev/null && command -v redis-server >/dev/null && command -v curl >/dev/null ||
    sh "$ROOT/scripts/deps.sh" wrk redis-server curl
[ -x "$BUILD/edge" ] && [ -x "$BUILD/origin-sim" ] && [ -x "$BUILD/edge-bench" ] &&
    [ -f "$BUILD/functions/hello.so" ] || { echo "build first: make" >&2; exit 1; }

T=$(mktemp -d /tmp/edge-fn-bench.XXXXXX)
mkdir -p "$T/logs" "$T/fn1" "$T/fn2"
pids=""
cleanup() {
    set +e
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
    for i in $(seq 50); do
        left=""; for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
        [ -z "$left" ] && break; sleep 0.1
    done
    [ -n "$left" ] && kill -KILL $left 2>/dev/null
    wait 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
fail() {
    echo "functions.sh: $*" >&2
    for f in "$T"/logs/*; do [ -s "$f" ] && { echo "--- ${f##*/}" >&2; tail -n 5 "$f" >&2; }; done
    exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done
    fail "$2: port $1 never opened"
}

REDIS=$(free_port); ORIGIN=$(free_port); EDGE=$(free_port); ADMIN=$(free_port)
cp "$BUILD/functions/hello.so" "$BUILD/functions/headers.so" "$T/fn1/"

redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$T" \
    --logfile "$T/logs/redis.log" & pids="$pids $!"
"$BUILD/origin-sim" --listen "127.0.0.1:$ORIGIN" >"$T/logs/origin-sim.log" 2>&1 & pids="$pids $!"
conf() { # $1 function_dir
cat > "$T/edge.conf" <<CONF
workers auto;
listen 127.0.0.1:$EDGE;
admin 127.0.0.1:$ADMIN;
access_log off;
redis 127.0.0.1:$REDIS;
function_dir $1;
function_run_dir $T/run;
cache_dir $T/cache max_size=64m mem=16m;
origin app { server 127.0.0.1:$ORIGIN; keepalive 64; }
site * {
    route = /fn/hello { function hello; kv_namespace bench; }
    route = /fn/nokv { function headers set=req:X-Bench:1; return 200 "{\"hello\":\"world\"}\n"; }
    route / { origin app; cache on; }
}
CONF
}
conf "$T/fn1"
wait_port "$REDIS" redis-server; wait_port "$ORIGIN" origin-sim
"$BUILD/edge" -t -c "$T/edge.conf" >"$T/logs/edge.log" 2>&1 || fail "edge rejects its conf"
"$BUILD/edge" -c "$T/edge.conf" >>"$T/logs/edge.log" 2>&1 & pids="$pids $!"
wait_port "$EDGE" edge

CACHED="/resp?cc=max-age%3D3600&size=48"   # about the size of hello's answer
for p in /fn/hello /fn/nokv "$CACHED" "$CACHED"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$EDGE$p")
    [ "$code" = 200 ] || fail "GET $p answered $code"
done
curl -s -D - -o /dev/null "http://127.0.0.1:$EDGE$CACHED" | grep -qi '^cache-status: edge; hit' ||
    fail "the cached route does not hit"

run() { # $1 path -> "rps p50_ms p99_ms"
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$EDGE$1" | awk '
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        /Requests\/sec/ { rps=$2 } /^ +50%/ { p50=ms($2) } /^ +99%/ { p99=ms($2) }
        /Non-2xx|Socket errors/ { print "  wrk: " $0 > "/dev/stderr" }
        END { printf "%s %.3f %.3f\n", rps, p50, p99 }'
}
med() { sort -g -k"$2" "$1" | awk -v k="$2" '{a[NR]=$k} END {print a[int((NR+1)/2)]}'; }

echo "throughput: wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS round(s)"
printf "%-6s %-7s %12s %10s %10s\n" round route req/s p50_ms p99_ms
: > "$T/hello.res"; : > "$T/cached.res"
for i in $(seq "$ROUNDS"); do
    if [ $((i % 2)) = 1 ]; then order="hello cached"; else order="cached hello"; fi
    for r in $order; do
        if [ "$r" = hello ]; then p=/fn/hello; else p="$CACHED"; fi
        res=$(run "$p"); echo "$res" >> "$T/$r.res"
        set -- $res; printf "%-6s %-7s %12s %10s %10s\n" "$i" "$r" "$1" "$2" "$3"
    done
done
h=$(med "$T/hello.res" 1); c=$(med "$T/cached.res" 1)
hp99=$(med "$T/hello.res" 3); cp99=$(med "$T/cached.res" 3)
awk -v h="$h" -v c="$c" -v hp="$hp99" -v cp="$cp99" 'BEGIN {
    printf "median: hello %.0f req/s (p99 %.2f ms), cache hit %.0f req/s (p99 %.2f ms): hello/cache %.2fx (target >= 0.50)\n",
           h, hp, c, cp, h / c }'
kv=$(redis-cli -p "$REDIS" GET efn:hello:bench:visits:/fn/hello)
echo "hello's counter in Redis: $kv (one INCR per answered request)"

echo
echo "latency of one KV call: edge-bench -c 1 -d $LAT_DURATION (no queueing)"
lat() { # $1 path -> p50 in ms
    "$BUILD/edge-bench" -q -c 1 -t 1 -d "$LAT_DURATION" "http://127.0.0.1:$EDGE$1" | awk '
        function ms(v, u) { if (u == "us") return v/1000; if (u == "ms") return v; if (u == "s") return v*1000; return v }
        $1 == "p50" { print ms($2, $3) }'
}
n1=$(lat /fn/nokv); h1=$(lat /fn/hello); n2=$(lat /fn/nokv); h2=$(lat /fn/hello)
awk -v n1="$n1" -v n2="$n2" -v h1="$h1" -v h2="$h2" 'BEGIN {
    n = (n1 < n2) ? n1 : n2; h = (h1 < h2) ? h1 : h2
    printf "p50: function without KV %.3f ms, hello (one INCR) %.3f ms: one KV call adds %.3f ms (target < 0.3)\n", n, h, h - n }'

echo
echo "cold start: a new build of hello (a changed .so) loaded by a reload"
cp "$BUILD/functions/headers.so" "$T/fn2/"
cp "$BUILD/functions/hello.so" "$T/fn2/hello.so"
printf 'x' >> "$T/fn2/hello.so"   # another sha256: a new build, copied, dlopened and initialised
conf "$T/fn2"
t0=$(date +%s%N)
curl -s -o "$T/reload.json" -X POST "http://127.0.0.1:$ADMIN/reload" || fail "reload failed"
t1=$(date +%s%N)
first=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$EDGE/fn/hello")
grep -q reloaded "$T/reload.json" || fail "reload refused: $(cat "$T/reload.json")"
sleep 0.2
load=$(grep "loaded 'hello'" "$T/logs/edge.log" | tail -n 1 | sed -n "s/.* in \([0-9.]*\) ms.*/\1/p")
awk -v l="$load" -v r="$(( (t1 - t0) / 1000 ))" -v f="$first" 'BEGIN {
    printf "copy + dlopen + init of the new build: %.3f ms (target < 1); whole reload %.1f ms; first answer after it %.3f ms\n",
           l, r / 1000, f * 1000 }'
