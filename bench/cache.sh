#!/bin/bash
# bench/cache.sh — cache hits through edge, nginx proxy_cache and Varnish, same origin, same run.
#
# Origin: origin-sim with LATENCY (default 50ms) added to every response, so a
# request that misses shows at once in p50/p99; /resp?cc=max-age%3D3600&size=N
# is storable by all three caches. In front: edge (cache_dir in a temp dir,
# route with 'cache on'), nginx (proxy_cache, upstream keepalive, sendfile) and
# varnishd (-s malloc,256m). Each object is warmed with one request and the
# second one must be a hit (edge 'Cache-Status: edge; hit', nginx
# 'X-Cache-Status: HIT', Varnish 'X-Cache: HIT' set in VCL from obj.hits);
# a cache that does not hit gets no figures for that size.
# Load: wrk, CONNS connections, THREADS threads, DURATION per run, ROUNDS
# rounds per size with the order of the caches rotated each round so that
# machine noise hits all alike. Origin requests during each run are counted
# from origin-sim's /_stats (should be 0: everything is a hit).
# Prints requests/s, p50 and p99 (median over rounds) per size and cache, the
# ratios edge/nginx and edge/varnish, the targets of issue 4, and the latency
# of a warm hit through edge vs the origin directly (LAT_CONNS connections).
#
# Edge keeps objects up to 64 KiB in its memory tier (cache_dir mem=EDGE_MEM,
# 256m like Varnish's storage; EDGE_MEM=0 turns it off), larger ones are
# sent from disk with sendfile.
#
# Usage: bench/cache.sh [BUILD_DIR]
#   env: CONNS=64 DURATION=10s ROUNDS=3 THREADS=2 SIZES="1024 16384 262144 4194304"
#        LAT_CONNS=4 LATENCY=50ms EDGE_MEM=256m
# A quick run: DURATION=3s ROUNDS=1 bench/cache.sh   (about a minute)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
SIZES=${SIZES:-1024 16384 262144 4194304}
LAT_CONNS=${LAT_CONNS:-4}
LATENCY=${LATENCY:-50ms}
EDGE_MEM=${EDGE_MEM:-256m}
CACHES="edge nginx varnish"
command -v wrk >/dev/null && command -v nginx >/dev/null && command -v varnishd >/dev/null && command -v curl >/dev/null ||
    sh "$ROOT/scripts/deps.sh" wrk nginx-light varnish curl
[ -x "$BUILD/edge" ] && [ -x "$BUILD/origin-sim" ] || { echo "build first: make" >&2; exit 1; }

T=$(mktemp -d /tmp/edge-cache-bench.XXXXXX)
chmod 755 "$T"   # nginx workers and the varnish child run as other users when we are root
mkdir -p "$T/logs"
pids=""

# Every process we started (all are our children, none daemonizes) and its descendants.
roots() { echo $pids; }
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
    local r all left p i
    r=$(roots); all=$(tree $r)
    [ -n "$r" ] && kill -TERM $r 2>/dev/null
    for i in $(seq 100); do   # up to 10 s, then SIGKILL what is left
        left=""; for p in $all; do alive "$p" && left="$left $p"; done
        [ -z "$left" ] && break; sleep 0.1
    done
    [ -n "$left" ] && { echo "cache.sh: killing leftover processes:$left" >&2; kill -KILL $left 2>/dev/null; }
    wait 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "cache.sh: $*" >&2
    for f in "$T"/logs/*; do [ -s "$f" ] && { echo "--- ${f##*/}" >&2; tail -n 5 "$f" >&2; }; done
    exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # $1 port, $2 name; up to 10 s (varnishd compiles its VCL first)
    for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done
    fail "$2: port $1 never opened"
}
human() { awk -v n="$1" 'BEGIN { if (n >= 1048576 && n % 1048576 == 0) printf "%dMiB", n/1048576;
                                  else if (n >= 1024 && n % 1024 == 0) printf "%dKiB", n/1024; else printf "%dB", n }'; }
url_path() { echo "/resp?cc=max-age%3D3600&size=$1"; }

ORIGIN=$(free_port); EDGE=$(free_port); NGX=$(free_port); VAR=$(free_port)
declare -A PORT=([edge]=$EDGE [nginx]=$NGX [varnish]=$VAR)

# --- origin
"$BUILD/origin-sim" --listen "127.0.0.1:$ORIGIN" --latency "$LATENCY" >"$T/logs/origin-sim.log" 2>&1 & pids="$pids $!"
wait_port "$ORIGIN" origin-sim

# --- edge
cat > "$T/edge.conf" <<CONF
workers auto;
listen 127.0.0.1:$EDGE;
access_log off;
cache_dir $T/edge-cache max_size=1g mem=$EDGE_MEM;
origin app { server 127.0.0.1:$ORIGIN; keepalive 64; }
site * { route / { origin app; cache on; } }
CONF
"$BUILD/edge" -t -c "$T/edge.conf" >"$T/logs/edge.log" 2>&1 || fail "edge rejects its conf"
"$BUILD/edge" -c "$T/edge.conf" >>"$T/logs/edge.log" 2>&1 & pids="$pids $!"

# --- nginx: proxy_cache honours the origin's Cache-Control (max-age=3600)
mkdir -p "$T/nginx-cache" "$T/nginx-tmp"
cat > "$T/nginx.conf" <<NGX
worker_processes $(nproc);
pid $T/nginx.pid;
error_log $T/logs/nginx.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path $T/nginx-tmp; proxy_temp_path $T/nginx-tmp;
    proxy_cache_path $T/nginx-cache levels=1:2 keys_zone=bench:16m max_size=1g inactive=1h use_temp_path=off;
    upstream origin { server 127.0.0.1:$ORIGIN; keepalive 64; }
    server {
        listen 127.0.0.1:$NGX;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_lock on;
            add_header X-Cache-Status \$upstream_cache_status always;
        }
    }
}
NGX
# in the foreground as our child: a daemonized master would be left a zombie where init does not reap
nginx -c "$T/nginx.conf" -e "$T/logs/nginx.err" -g 'daemon off;' >>"$T/logs/nginx.err" 2>&1 & pids="$pids $!"

# --- Varnish: honours the origin's Cache-Control; X-Cache says hit or miss
cat > "$T/varnish.vcl" <<VCL
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$ORIGIN"; }
sub vcl_deliver {
    if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
}
VCL
VJAIL=""; [ "$(id -u)" = 0 ] || VJAIL="-j none"   # as root: -j unix drops to the varnish/vcache users
varnishd -F $VJAIL -a "127.0.0.1:$VAR" -T none -n "$T/varnish" -f "$T/varnish.vcl" -s malloc,256m \
    >"$T/logs/varnish.log" 2>&1 & pids="$pids $!"

wait_port "$EDGE" edge; wait_port "$NGX" nginx; wait_port "$VAR" varnishd

# --- nothing of ours listens outside 127.0.0.1
if command -v ss >/dev/null; then
    ours=" $(tree $(roots) | tr '\n' ' ') "
    bad=$(ss -Hltnp 2>/dev/null | while read -r line; do
        for p in $(echo "$line" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
            case "$ours" in *" $p "*) case "$(echo "$line" | awk '{print $4}')" in 127.0.0.1:*) ;; *) echo "$line" ;; esac; break ;; esac
        done
    done)
    [ -z "$bad" ] || fail "listening outside 127.0.0.1: $bad"
fi

origin_requests() { curl -s --max-time 5 "http://127.0.0.1:$ORIGIN/_stats" | sed -n 's/^{"requests":\([0-9]*\).*/\1/p'; }

# --- warm: the second request for each object must be a hit with the whole body
declare -A HIT=()
is_hit() { # $1 cache, $2 header file
    case $1 in
        edge)    grep -qiE '^cache-status: *edge; *hit' "$2" ;;
        nginx)   grep -qiE '^x-cache-status: *HIT' "$2" ;;
        varnish) grep -qiE '^x-cache: *HIT' "$2" && grep -qiE '^x-varnish: *[0-9]+ +[0-9]+' "$2" ;;
    esac
}
hit_header() { # what the cache said, for the report
    case $1 in
        edge)    grep -i '^cache-status:' "$2" ;;
        nginx)   grep -i '^x-cache-status:' "$2" ;;
        varnish) grep -iE '^(x-cache|x-varnish):' "$2" ;;
    esac | tr -d '\r' | tr '\n' ' '
}
echo "bench/cache.sh: ${CONNS} connections, $THREADS threads, $DURATION x $ROUNDS rounds, origin latency $LATENCY, $(nproc) cores, edge mem=$EDGE_MEM"
echo "warm-up (second request must be a hit):"
for s in $SIZES; do
    line=$(printf "  %-7s" "$(human "$s")")
    for c in $CACHES; do
        u="http://127.0.0.1:${PORT[$c]}$(url_path "$s")"
        curl -s --max-time 30 -o /dev/null "$u" || true
        got=$(curl -s --max-time 30 -D "$T/h" -o /dev/null -w '%{http_code} %{size_download}' "$u" || echo "000 0")
        if [ "$got" = "200 $s" ] && is_hit "$c" "$T/h"; then
            HIT[$c.$s]=1; line="$line $c hit,"
        else
            line="$line $c NO HIT ($got; $(hit_header "$c" "$T/h")),"
        fi
    done
    echo "${line%,}"
done
for c in $CACHES; do  # short load so that every cache has its connections and threads up
    wrk -t1 -c8 -d1s "http://127.0.0.1:${PORT[$c]}$(url_path "${SIZES%% *}")" >/dev/null 2>&1 || true
done

run() { # $1 port, $2 path, $3 threads, $4 connections, $5 label -> "rps p50_ms p99_ms MiB/s"
    wrk -t"$3" -c"$4" -d"$DURATION" --latency "http://127.0.0.1:$1$2" | awk -v tag="$5" '
        function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /m$/) return v*60000; if (v ~ /s$/) return v*1000; return v }
        function mib(v) { if (v ~ /GB$/) return v*1024; if (v ~ /MB$/) return v+0; if (v ~ /KB$/) return v/1024; return v/1048576 }
        /Requests\/sec/ { rps=$2 } /Transfer\/sec/ { tp=mib($2) }
        /^ +50%/ { p50=ms($2) } /^ +99%/ { p99=ms($2) }
        /Non-2xx|Socket errors/ { err=err " " $0 }
        END { printf "%s %.3f %.3f %.1f\n", rps, p50, p99, tp; if (err != "") print "  wrk " tag ":" err > "/dev/stderr" }'
}
med() { sort -g -k"$2" "$1" | awk -v k="$2" '{a[NR]=$k} END {print a[int((NR+1)/2)]}'; }

echo
printf "%-7s %-6s %-8s %12s %10s %10s %10s %8s\n" size round cache req/s p50_ms p99_ms MiB/s origin
for s in $SIZES; do
    for c in $CACHES; do : > "$T/$c.$s.res"; done
    for i in $(seq "$ROUNDS"); do
        # rotate the order: round 1 edge nginx varnish, round 2 nginx varnish edge, ...
        set -- $CACHES; k=$(( (i - 1) % $# )); order="${*:k+1} ${*:1:k}"
        for c in $order; do
            [ -n "${HIT[$c.$s]:-}" ] || continue
            o1=$(origin_requests)
            r=$(run "${PORT[$c]}" "$(url_path "$s")" "$THREADS" "$CONNS" "$c $(human "$s") round $i")
            o2=$(origin_requests)
            echo "$r" >> "$T/$c.$s.res"
            printf "%-7s %-6s %-8s %12s %10s %10s %10s %8s\n" "$(human "$s")" "$i" "$c" $r "$(( ${o2:-0} - ${o1:-0} ))"
        done
    done
done

# --- medians and ratios
echo
echo "median of $ROUNDS rounds ($CONNS connections); ratios: req/s > 1 and latency < 1 favour edge"
printf "%-7s %-14s %12s %10s %10s %10s\n" size cache req/s p50_ms p99_ms MiB/s
declare -A RPS=() P50=() P99=()
for s in $SIZES; do
    for c in $CACHES; do
        if [ -s "$T/$c.$s.res" ]; then
            RPS[$c.$s]=$(med "$T/$c.$s.res" 1); P50[$c.$s]=$(med "$T/$c.$s.res" 2); P99[$c.$s]=$(med "$T/$c.$s.res" 3)
            printf "%-7s %-14s %12s %10s %10s %10s\n" "$(human "$s")" "$c" "${RPS[$c.$s]}" "${P50[$c.$s]}" "${P99[$c.$s]}" "$(med "$T/$c.$s.res" 4)"
        else
            printf "%-7s %-14s %12s\n" "$(human "$s")" "$c" "n/a (no cache hit)"
        fi
    done
    for c in nginx varnish; do
        if [ -n "${RPS[edge.$s]:-}" ] && [ -n "${RPS[$c.$s]:-}" ]; then
            awk -v a="${RPS[edge.$s]}" -v b="${RPS[$c.$s]}" -v e="${P50[edge.$s]}" -v f="${P50[$c.$s]}" \
                -v g="${P99[edge.$s]}" -v h="${P99[$c.$s]}" -v s="$(human "$s")" -v n="edge/$c" 'BEGIN {
                printf "%-7s %-14s %11.2fx %9.2fx %9.2fx\n", s, n, a/b, (f > 0 ? e/f : 0), (h > 0 ? g/h : 0) }'
        fi
    done
done

# --- targets of issue 4
target() { # $1 label, $2 value a, $3 value b, $4 op (ge|le), $5 bound
    if [ -z "$2" ] || [ -z "$3" ]; then printf "  %-40s %s\n" "$1" "n/a"; return; fi
    awk -v l="$1" -v a="$2" -v b="$3" -v op="$4" -v t="$5" 'BEGIN {
        r = a / b; ok = (op == "ge") ? (r >= t) : (r <= t)
        printf "  %-40s %6.2fx  %s\n", l, r, ok ? "met" : "NOT MET" }'
}
echo
echo "targets (issue 4):"
for s in $SIZES; do
    [ "$s" = 1024 ] || continue
    target "1KiB req/s  edge/nginx   >= 1.25x" "${RPS[edge.$s]:-}" "${RPS[nginx.$s]:-}" ge 1.25
    target "1KiB req/s  edge/varnish >= 1.10x" "${RPS[edge.$s]:-}" "${RPS[varnish.$s]:-}" ge 1.10
    target "1KiB p99    edge/nginx   <= 1.00x" "${P99[edge.$s]:-}" "${P99[nginx.$s]:-}" le 1.00
    target "1KiB p99    edge/varnish <= 1.00x" "${P99[edge.$s]:-}" "${P99[varnish.$s]:-}" le 1.00
done
for s in $SIZES; do
    [ "$s" = 4194304 ] || continue
    target "4MiB req/s  edge/nginx   >= 1.00x" "${RPS[edge.$s]:-}" "${RPS[nginx.$s]:-}" ge 1.00
done

# --- what the cache saves: a warm hit through edge vs the origin itself
LS=${SIZES%% *}; LP=$(url_path "$LS")
echo
echo "latency, $(human "$LS") object, $LAT_CONNS connections, 1 thread: origin-sim directly (--latency $LATENCY) vs through edge (warm)"
if [ -z "${HIT[edge.$LS]:-}" ]; then
    echo "  n/a: edge does not hit $(human "$LS")"
else
    : > "$T/lat-origin.res"; : > "$T/lat-edge.res"
    printf "%-6s %-8s %12s %10s %10s\n" round target req/s p50_ms p99_ms
    for i in $(seq "$ROUNDS"); do
        r=$(run "$ORIGIN" "$LP" 1 "$LAT_CONNS" "origin round $i"); echo "$r" >> "$T/lat-origin.res"
        printf "%-6s %-8s %12s %10s %10s\n" "$i" origin ${r% *}
        r=$(run "$EDGE" "$LP" 1 "$LAT_CONNS" "edge (latency) round $i"); echo "$r" >> "$T/lat-edge.res"
        printf "%-6s %-8s %12s %10s %10s\n" "$i" edge ${r% *}
    done
    O50=$(med "$T/lat-origin.res" 2); O99=$(med "$T/lat-origin.res" 3)
    E50=$(med "$T/lat-edge.res" 2); E99=$(med "$T/lat-edge.res" 3)
    awk -v o50="$O50" -v o99="$O99" -v e50="$E50" -v e99="$E99" 'BEGIN {
        printf "median: origin p50 %.3f ms p99 %.3f ms | edge hit p50 %.3f ms p99 %.3f ms | saved p50 %.3f ms (%.0fx) p99 %.3f ms\n",
            o50, o99, e50, e99, o50 - e50, (e50 > 0 ? o50 / e50 : 0), o99 - e99 }'
fi
