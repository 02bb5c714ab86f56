#!/bin/bash
# The demo stack, in the foreground: a private redis-server, origin-sim, and
# edge with conf/edge.conf. Ctrl-C stops all three.
# Usage: scripts/run.sh BUILD_DIR   (make run calls it)
BUILD=${1:-build}
EDGE_PORT=8080 TLS_PORT=8443 ADMIN_PORT=9080 ORIGIN_PORT=9000 REDIS_PORT=6390
mkdir -p var/redis var/log
for p in $EDGE_PORT $TLS_PORT $ADMIN_PORT $ORIGIN_PORT $REDIS_PORT; do
    if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
        echo "run: port $p is already in use (another 'make run'?); stop it first" >&2
        exit 1
    fi
done 2>/dev/null
sh scripts/demo-cert.sh var/tls || exit 1   # conf/edge.conf's certificate (offline)
pids=""
stop() {
    trap - INT TERM EXIT
    echo
    echo "run: stopping"
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null; done
    for pid in $pids; do wait "$pid" 2>/dev/null; done
    exit 0
}
trap stop INT TERM EXIT

redis-server --port $REDIS_PORT --bind 127.0.0.1 --dir "$PWD/var/redis" --save '' \
    --appendonly no --daemonize no --logfile "$PWD/var/log/redis.log" &
pids="$pids $!"
"$BUILD/origin-sim" --listen 127.0.0.1:$ORIGIN_PORT --root origin-sim/www \
    --latency 40ms --jitter 10ms --log >var/log/origin-sim.log 2>&1 &
pids="$pids $!"
"$BUILD/edge" -c conf/edge.conf &
pids="$pids $!"

sleep 0.5
cat <<MSG

edge demo stack is up (logs in var/log/):
  edge        http://localhost:$EDGE_PORT    (conf/edge.conf)
              https://localhost:$TLS_PORT   (certificate of the demo CA var/tls/ca.crt)
  admin       http://127.0.0.1:$ADMIN_PORT
  origin-sim  http://127.0.0.1:$ORIGIN_PORT  (40 ms +-10 ms latency)
  redis       127.0.0.1:$REDIS_PORT

Try:
  curl -i http://localhost:$EDGE_PORT/hello                 answered at the edge
  curl -i --cacert var/tls/ca.crt https://localhost:$TLS_PORT/hello    the same over TLS
  curl -s http://localhost:$EDGE_PORT/fn/hello              an edge function: a visit counter in Redis
  curl -i http://localhost:$EDGE_PORT/headers               401: auth_key wants an API key
  curl -X PUT -d alice http://127.0.0.1:$ADMIN_PORT/kv/auth_key:keys/demo-key
  curl -s -H 'X-Api-Key: demo-key' http://localhost:$EDGE_PORT/headers    origin sees x-api-owner: alice; 6th in 10 s: 429
  curl -i http://localhost:$EDGE_PORT/static/index.html     twice: Cache-Status miss, then hit
  curl -s -X POST "http://127.0.0.1:$ADMIN_PORT/purge?prefix=http://localhost:$EDGE_PORT/static/"
  curl -s -o /dev/null -w '%{time_total}s\n' 'http://localhost:$EDGE_PORT/resp?cc=max-age%3D60'   (40 ms, then ~0)
  curl -i -X PUT -d '{"name":"ada"}' http://localhost:$EDGE_PORT/api/tables/users/items/u1
  curl -s http://localhost:$EDGE_PORT/api/tables/users/items/u1
  curl -s http://127.0.0.1:$ADMIN_PORT/metrics | head
  curl -s http://127.0.0.1:$ORIGIN_PORT/_stats               what reached the origin

Ctrl-C stops all three.
MSG
wait
