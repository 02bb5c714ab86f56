#!/bin/sh
# Makes the demo's TLS files, offline, with the openssl command: a private
# CA (ca.crt) and the certificates it signs for localhost (also 127.0.0.1
# and ::1) and example.com (also *.example.com), EC P-256 keys. Nothing is
# made again when they are there. conf/edge.conf and conf/examples/ use them;
# clients trust them with `curl --cacert var/tls/ca.crt`.
# Usage: scripts/demo-cert.sh [DIR]   (default var/tls; make run and make test call it)
set -e
DIR=${1:-var/tls}
[ -s "$DIR/localhost.crt" ] && [ -s "$DIR/example.com.crt" ] && exit 0
command -v openssl >/dev/null 2>&1 || {
    echo "demo-cert: the openssl command is missing (apt-get install openssl)" >&2
    exit 1
}
mkdir -p "$DIR"
cd "$DIR"
umask 077
k="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
openssl req -x509 $k -keyout ca.key -out ca.crt -days 3650 -subj "/CN=edge demo CA" 2>/dev/null
leaf() {
    openssl req -x509 -CA ca.crt -CAkey ca.key $k -keyout "$1.key" -out "$1.crt" -days 825 \
        -subj "/CN=$1" -addext "subjectAltName=$2" \
        -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
        2>/dev/null
}
leaf localhost "DNS:localhost,IP:127.0.0.1,IP:::1"
leaf example.com "DNS:example.com,DNS:*.example.com"
chmod 644 ./*.crt
echo "demo-cert: made $DIR/ca.crt and certificates for localhost and example.com"
