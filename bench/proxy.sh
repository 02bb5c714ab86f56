#!/bin/bash
# bench/proxy.sh — edge vs nginx as plain reverse proxies, same backend, same run.
#
# Backend: nginx serving a static 1 KiB file (BACKEND=nginx, default) or
# origin-sim's /bytes/1024 (BACKEND=osim). In front: edge (conf below) and
# nginx with upstream keepalive. Load: wrk, CONNS connections, DURATION each,
# alternating rounds (ROUNDS) so that machine noise hits both alike.
# Prints requests/s, p50 and p99 for both and the ratios edge/nginx.
#
# Usage: bench/proxy.sh [BUILD_DIR]   env: CONNS=64 DURATION=10s ROUNDS=3 THREADS=2
set -eu
BUILD=${1:-build}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
BACKEND=${BACKEND:-nginx}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v wrk >/dev/null && command -v nginx >/dev/null || sh "$ROOT/scripts/deps.sh" wrk nginx-light
[ -x "$BUILD/edge" ] || { echo "build first: make" >&2; exit 1; }

T=$(mktemp -d /tmp/edge-bench.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    [ -f "$T/nginx-back.pid" ] && kill "$(cat "$T/nginx-back.pid")" 2>/dev/null || true
    [ -f "$T/nginx-front.pid" ] && kill "$(cat "$T/nginx-front.pid")" 2>/dev/null || true
    sleep 0.3; rm -rf "$T"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

BACK=$(free_port); EDGE=$(free_port); NGX=$(free_port)
mkdir -p "$T/www" "$T/logs"; chmod 755 "$T" "$T/www"
head -c 1024 /dev/zero | tr '\0' 'x' > "$T/www/1k"; chmod 644 "$T/www/1k"

nginx_conf() { # $1 name, $2 server block body
cat > "$T/nginx-$1.conf" <<NGX
worker_processes 2;
pid $T/nginx-$1.pid;
error_log $T/logs/nginx-$1.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path $T/logs; proxy_temp_path $T/logs;
    $2
}
NGX
}

if [ "$BACKEND" = nginx ]; then
    nginx_conf back "server { listen 127.0.0.1:$BACK; root $T/www; location / { } }"
    nginx -c "$T/nginx-back.conf" -e "$T/logs/nginx-back.err"
    BACK_PATH=/1k
else
    "$BUILD/origin-sim" --listen 127.0.0.1:$BACK >"$T/logs/osim.log" 2>&1 & pids="$pids $!"
    BACK_PATH=/bytes/1024
fi
wait_port $BACK

nginx_conf front "upstream app { server 127.0.0.1:$BACK; keepalive 64; }
    server { listen 127.0.0.1:$NGX; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
nginx -c "$T/nginx-front.conf" -e "$T/logs/nginx-front.err"

cat > "$T/edge.conf" <<CONF
workers auto;
listen 127.0.0.1:$EDGE;
access_log off;
origin app { server 127.0.0.1:$BACK; keepalive 64; }
site * { route / { origin app; } }
CONF
"$BUILD/edge" -c "$T/edge.conf" 2>"$T/logs/edge.err" & pids="$pids $!"
wait_port $NGX; wait_port $EDGE

# warm up both
wrk -t1 -c8 -d1s "http://127.0.0.1:$EDGE$BACK_PATH" >/dev/null
wrk -t1 -c8 -d1s "http://127.0.0.1:$NGX$BACK_PATH" >/dev/null

run() { # $1 port -> "rps p50_ms p99_ms"
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$1$BACK_PATH" | awk '
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        /Requests\/sec/ { rps=$2 }
        /^ +50%/ { p50=ms($2) } /^ +99%/ { p99=ms($2) }
        /Non-2xx|Socket errors/ { err=err $0 }
        END { printf "%s %.3f %.3f\n", rps, p50, p99; if (err != "") print err > "/dev/stderr" }'
}

echo "bench/proxy.sh: backend=$BACKEND ${CONNS} connections, $DURATION x $ROUNDS rounds, 1 KiB bodies, $(nproc) cores"
printf "%-6s %-6s %12s %10s %10s\n" round proxy req/s p50_ms p99_ms
: > "$T/edge.res"; : > "$T/nginx.res"
for i in $(seq "$ROUNDS"); do
    r=$(run $EDGE); echo "$r" >> "$T/edge.res"; printf "%-6s %-6s %12s %10s %10s\n" $i edge $r
    r=$(run $NGX);  echo "$r" >> "$T/nginx.res"; printf "%-6s %-6s %12s %10s %10s\n" $i nginx $r
done
# medians of the rounds
med() { sort -n -k"$2" "$1" | awk -v k="$2" '{a[NR]=$k} END {print a[int((NR+1)/2)]}'; }
E_RPS=$(med "$T/edge.res" 1); N_RPS=$(med "$T/nginx.res" 1)
E_P50=$(med "$T/edge.res" 2); N_P50=$(med "$T/nginx.res" 2)
E_P99=$(med "$T/edge.res" 3); N_P99=$(med "$T/nginx.res" 3)
echo
printf "%-8s %12s %10s %10s\n" median req/s p50_ms p99_ms
printf "%-8s %12s %10s %10s\n" edge "$E_RPS" "$E_P50" "$E_P99"
printf "%-8s %12s %10s %10s\n" nginx "$N_RPS" "$N_P50" "$N_P99"
awk -v a="$E_RPS" -v b="$N_RPS" -v c="$E_P99" -v d="$N_P99" -v e="$E_P50" -v f="$N_P50" 'BEGIN {
    printf "ratio edge/nginx: req/s %.2fx   p50 %.2fx   p99 %.2fx  (req/s > 1 and latency < 1 favour edge)\n", a/b, e/f, c/d }'
