#!/bin/bash
# bench/tls.sh — cache hits over TLS through edge and nginx, same certificate,
# same origin, same object, same run.
#
# A private CA and a localhost certificate are made in a temp dir (openssl).
# Origin: origin-sim with LATENCY (default 50ms); the object
# /resp?cc=max-age%3D3600&size=1024 is warmed in both caches and every
# measured request is a hit (checked: origin requests during the runs).
#   edge:  listen tls h2, cache_dir, route / { cache on; }
#   nginx: listen ssl http2, proxy_cache, ssl_session_cache + tickets
# Runs, ROUNDS times with the order rotated, medians:
#   https/1.1   wrk -t THREADS -c CONNS (keep-alive): requests/s, p50, p99
#   h2          h2load -c CONNS -m STREAMS for requests/s; edge-bench --h2 (same
#               connections and streams) for p50/p99
#   handshakes  wrk with 'Connection: close': a new connection (and TLS
#               handshake) per request: requests/s = handshakes/s
# Target (issue 6): edge >= 1.1x nginx requests/s on https/1.1 and h2, p99 no worse.
#
# Edge keeps the object in its memory tier (cache_dir mem=EDGE_MEM, 64m as in
# conf/edge.conf; EDGE_MEM=0 serves it from the file).
#
# Usage: bench/tls.sh [BUILD_DIR]
#   env: CONNS=64 STREAMS=10 THREADS=2 DURATION=5s ROUNDS=3 LATENCY=50ms EDGE_MEM=64m
#        TESTS="https1 h2 handshake" (which comparisons run, in that order)
#        PROFILE=1: start both servers, print their ports and wait (for perf)
# A quick run: DURATION=2s ROUNDS=1 bench/tls.sh
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
CONNS=${CONNS:-64}
STREAMS=${STREAMS:-10}
THREADS=${THREADS:-2}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
TESTS=${TESTS:-https1 h2 handshake}
LATENCY=${LATENCY:-50ms}
EDGE_MEM=${EDGE_MEM:-64m}
command -v wrk >/dev/null && command -v nginx >/dev/null && command -v h2load >/dev/null &&
    command -v openssl >/dev/null && command -v curl >/dev/null ||
    sh "$ROOT/scripts/deps.sh" wrk nginx-light nghttp2-client openssl curl
[ -x "$BUILD/edge" ] && [ -x "$BUILD/origin-sim" ] && [ -x "$BUILD/edge-bench" ] ||
    { echo "build first: make" >&2; exit 1; }

T=$(mktemp -d /tmp/edge-tls-bench.XXXXXX)
chmod 755 "$T"
mkdir -p "$T/logs"
pids=""
cleanup() {
    set +e
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
    for i in $(seq 100); do
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
    echo "tls.sh: $*" >&2
    for f in "$T"/logs/*; do [ -s "$f" ] && { echo "--- ${f##*/}" >&2; tail -n 5 "$f" >&2; }; done
    exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done
    fail "$2: port $1 never opened"
}

# --- certificates: a CA and localhost (+127.0.0.1) signed by it
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
    -keyout "$T/ca.key" -out "$T/ca.crt" >/dev/null 2>&1 || fail "openssl: CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$T/cert.key" -out "$T/cert.csr" >/dev/null 2>&1 || fail "openssl: key"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$T/san.ext"
openssl x509 -req -in "$T/cert.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial -days 2 \
    -extfile "$T/san.ext" -out "$T/cert.crt" >/dev/null 2>&1 || fail "openssl: certificate"
chmod 644 "$T/cert.key"   # nginx workers may run as another user

ORIGIN=$(free_port); EDGE=$(free_port); NGX=$(free_port)
OBJ="/resp?cc=max-age%3D3600&size=1024"
"$BUILD/origin-sim" --listen "127.0.0.1:$ORIGIN" --latency "$LATENCY" >"$T/logs/origin-sim.log" 2>&1 &
pids="$pids $!"
wait_port "$ORIGIN" origin-sim

cat > "$T/edge.conf" <<CONF
workers auto;
listen 127.0.0.1:$EDGE tls h2;
access_log off;
tls_certificate $T/cert.crt $T/cert.key;
cache_dir $T/edge-cache max_size=1g mem=$EDGE_MEM;
origin app { server 127.0.0.1:$ORIGIN; keepalive 64; }
site * { route / { origin app; cache on; } }
CONF
"$BUILD/edge" -t -c "$T/edge.conf" >"$T/logs/edge.log" 2>&1 || fail "edge rejects its conf"
"$BUILD/edge" -c "$T/edge.conf" >>"$T/logs/edge.log" 2>&1 & pids="$pids $!"

mkdir -p "$T/nginx-cache" "$T/nginx-tmp"
cat > "$T/nginx.conf" <<NGX
worker_processes $(nproc);
pid $T/nginx.pid;
error_log $T/logs/nginx.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path $T/nginx-tmp; proxy_temp_path $T/nginx-tmp;
    proxy_cache_path $T/nginx-cache levels=1:2 keys_zone=bench:16m max_size=1g inactive=1h use_temp_path=off;
    upstream origin { server 127.0.0.1:$ORIGIN; keepalive 64; }
    ssl_certificate $T/cert.crt;
    ssl_certificate_key $T/cert.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:16m;
    ssl_session_tickets on;
    server {
        listen 127.0.0.1:$NGX ssl http2;
        http2_max_concurrent_streams 128;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            add_header X-Cache-Status \$upstream_cache_status always;
        }
    }
}
NGX
nginx -c "$T/nginx.conf" -e "$T/logs/nginx.err" -g 'daemon off;' >>"$T/logs/nginx.err" 2>&1 &
pids="$pids $!"
wait_port "$EDGE" edge; wait_port "$NGX" nginx

declare -A PORT=([edge]=$EDGE [nginx]=$NGX)
C="curl -s --cacert $T/ca.crt"
for s in edge nginx; do
    $C -o /dev/null "https://localhost:${PORT[$s]}$OBJ" || fail "$s: https GET failed"
    $C -o /dev/null "https://localhost:${PORT[$s]}$OBJ"
done
$C -D - -o /dev/null "https://localhost:$EDGE$OBJ" | grep -qi '^cache-status: edge; hit' || fail "edge does not hit"
$C -D - -o /dev/null "https://localhost:$NGX$OBJ" | grep -qi '^x-cache-status: HIT' || fail "nginx does not hit"
H2=""
for s in edge nginx; do
    if [ "$($C --http2 -o /dev/null -w '%{http_version}' "https://localhost:${PORT[$s]}$OBJ")" = 2 ]; then
        H2="$H2 $s"
    else
        echo "note: $s does not negotiate h2: no h2 figures for it"
    fi
done
if [ -n "${PROFILE:-}" ]; then
    echo "edge https://localhost:$EDGE$OBJ (pid $(pgrep -n -f "edge -c $T/edge.conf"))"
    echo "nginx https://localhost:$NGX$OBJ"
    echo "ca $T/ca.crt; Ctrl-C or kill $$ to stop"
    # the sleep joins $pids: cleanup's 'wait' would otherwise wait for it
    while :; do sleep 3600 & pids="$pids $!"; wait $!; done
fi
origin_requests() { curl -s "http://127.0.0.1:$ORIGIN/_stats" | sed -n 's/.*"requests":\([0-9]*\).*/\1/p'; }

wrk_run() { # $1 url, extra wrk args... -> "rps p50 p99"
    local url=$1; shift
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "$url" 2>&1 | awk '
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        /Requests\/sec/ { rps=$2 } /^ +50%/ { p50=ms($2) } /^ +99%/ { p99=ms($2) }
        /Non-2xx|Socket errors/ { print "  wrk: " $0 > "/dev/stderr" }
        END { printf "%s %.3f %.3f\n", rps, p50, p99 }'
}
h2_run() { # $1 url -> "rps p50 p99": h2load for the rate, edge-bench --h2 for percentiles
    local rps lat
    rps=$(h2load -t"$THREADS" -c"$CONNS" -m"$STREAMS" -D "${DURATION%s}" "$1" 2>&1 |
          awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i == "req/s,") print $(i-1) }')
    lat=$("$BUILD/edge-bench" -q --h2 --cacert "$T/ca.crt" -t "$THREADS" -c "$CONNS" \
          --streams "$STREAMS" -d "$DURATION" "$1" | awk '
        function ms(v, u) { if (u == "us") return v/1000; if (u == "ms") return v; if (u == "s") return v*1000; return v }
        $1 == "p50" { p50 = ms($2, $3) } $1 == "p99" { p99 = ms($2, $3) }
        END { printf "%.3f %.3f", p50, p99 }')
    echo "${rps:-0} $lat"
}
med() { sort -g -k"$2" "$1" | awk -v k="$2" '{a[NR]=$k} END {print a[int((NR+1)/2)]}'; }

echo "TLS cache hits of a 1 KiB object; $CONNS connections, $THREADS threads, $DURATION per run, $ROUNDS round(s)"
printf "%-11s %-6s %-6s %12s %10s %10s\n" test round server req/s p50_ms p99_ms
before=$(origin_requests)
for t in $TESTS; do
    for s in edge nginx; do : > "$T/$t.$s"; done
    for i in $(seq "$ROUNDS"); do
        if [ $((i % 2)) = 1 ]; then order="edge nginx"; else order="nginx edge"; fi
        for s in $order; do
            url="https://localhost:${PORT[$s]}$OBJ"
            case $t in
            https1) res=$(wrk_run "$url") ;;
            h2) case " $H2 " in *" $s "*) res=$(h2_run "$url") ;; *) continue ;; esac ;;
            handshake) res=$(wrk_run "$url" -H "Connection: close") ;;
            esac
            echo "$res" >> "$T/$t.$s"
            set -- $res; printf "%-11s %-6s %-6s %12s %10s %10s\n" "$t" "$i" "$s" "$1" "$2" "$3"
        done
    done
done
after=$(origin_requests)
echo
echo "medians; ratios edge/nginx (req/s > 1 and p99 < 1 favour edge); origin requests during the runs: $((after - before))"
for t in $TESTS; do
    if [ ! -s "$T/$t.edge" ] || [ ! -s "$T/$t.nginx" ]; then
        echo "$t: n/a (a server without h2)"; continue
    fi
    awk -v t="$t" -v er="$(med "$T/$t.edge" 1)" -v nr="$(med "$T/$t.nginx" 1)" \
        -v ep="$(med "$T/$t.edge" 3)" -v np="$(med "$T/$t.nginx" 3)" 'BEGIN {
        printf "%-10s edge %9.0f req/s p99 %7.2f ms | nginx %9.0f req/s p99 %7.2f ms | req/s %.2fx, p99 %.2fx%s\n",
               t, er, ep, nr, np, er / nr, (np > 0 ? ep / np : 0), (t == "handshake" ? "" : " (target req/s >= 1.10x, p99 <= 1x)") }'
done
