#!/bin/sh
# Installs the Debian packages edge needs to build, test and run, when missing.
# As root it runs apt-get; otherwise it prints the exact command and fails.
# Usage: scripts/deps.sh [extra-package ...]
set -e
PKGS="gcc make pkg-config clang libevent-dev libssl-dev libc-ares-dev libhiredis-dev \
libnghttp2-dev node-llhttp libcmocka-dev libcurl4-openssl-dev libjansson-dev libpcre2-dev \
redis-server curl dnsmasq-base procps openssl $*"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine has no package lists yet; refresh when they are missing or the install fails.
    apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 || {
        apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; }
else
    echo "deps: missing packages:$missing" >&2
    echo "deps: run as root:  apt-get update && $cmd" >&2
    exit 1
fi
