#!/usr/bin/env bash
# Runs a command with a moto S3 server (an S3-compatible server from PyPI)
# on a free loopback port, exported as DARKROOM_TEST_S3; stops it after.
set -euo pipefail
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log="${TMPDIR:-/tmp}/darkroom-moto-$port.log"
moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done
DARKROOM_TEST_S3="http://127.0.0.1:$port" "$@"
