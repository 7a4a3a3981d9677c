#!/usr/bin/env bash
# Run coturn on this machine for development, with a gateway on the same host.
#   turn/run-local.sh                 # prints the gateway settings to use, then runs in the foreground
# Loopback peers are allowed here (the browser, coturn and the gateway all live on this host);
# never use --allow-loopback-peers in production (see turnserver.conf).
set -euo pipefail
secret="${TURN_SECRET:-$(openssl rand -hex 16)}"
port="${TURN_PORT:-3478}"
address="${TURN_ADDRESS:-127.0.0.1}"
command -v turnserver >/dev/null || { echo "install coturn first: apt-get install coturn" >&2; exit 1; }
cat <<INFO
coturn on $address:$port. Start the gateway with:
  ICE_SERVERS=turn:$address:$port?transport=udp,turn:$address:$port?transport=tcp TURN_SECRET=$secret scripts/run
(add ICE_TRANSPORT_POLICY=relay to force the gateway's own side through the relay too)
INFO
exec turnserver -n --listening-ip="$address" --relay-ip="$address" --listening-port="$port" \
  --min-port=49160 --max-port=49300 --use-auth-secret --static-auth-secret="$secret" \
  --realm=localhost --fingerprint --no-tls --no-dtls --no-cli --allow-loopback-peers \
  --pidfile="${TMPDIR:-/tmp}/turnserver-dev.pid" --log-file=stdout --simple-log
