#!/usr/bin/env bash
# Run coturn on this machine for development, next to a gateway on the same host.
#
#   turn/run-local.sh            # prints the gateway settings to use, then runs in the foreground
#   TURN_ADDRESS=192.168.1.20 turn/run-local.sh   # reachable from a phone on the same LAN
#
# Settings (environment): TURN_SECRET (default: random), TURN_PORT (3478), TURN_ADDRESS
# (127.0.0.1), TURN_MIN_PORT/TURN_MAX_PORT (49160-49300, the relay range).
#
# Differences from the production turn/turnserver.conf, on purpose and for this host only:
# no config file (-n), no TLS, and --allow-loopback-peers with no denied-peer-ip, because the
# browser, coturn and the gateway all talk over loopback here. Never deploy these flags.
set -euo pipefail
secret="${TURN_SECRET:-$(openssl rand -hex 16)}"
port="${TURN_PORT:-3478}"
address="${TURN_ADDRESS:-127.0.0.1}"
min_port="${TURN_MIN_PORT:-49160}"
max_port="${TURN_MAX_PORT:-49300}"

command -v turnserver >/dev/null || { echo "coturn is missing: scripts/setup_turn.sh (apt-get install coturn)" >&2; exit 1; }
if command -v ss >/dev/null && ss -Hlun "sport = :$port" | grep -q .; then
  echo "UDP port $port is taken (the Debian coturn service? systemctl stop coturn), or set TURN_PORT" >&2
  exit 1
fi

cat <<INFO
coturn on $address:$port (relays $min_port-$max_port). Start the gateway with:

  ICE_SERVERS="stun:$address:$port,turn:$address:$port?transport=udp,turn:$address:$port?transport=tcp" \\
  TURN_SECRET=$secret scripts/run

Add ICE_TRANSPORT_POLICY=relay to force the gateway's own peer through the relay, and open the
page with ?relay=1 to force the browser's side too: then every packet crosses coturn.
INFO

exec turnserver -n --listening-ip="$address" --relay-ip="$address" --listening-port="$port" \
  --min-port="$min_port" --max-port="$max_port" --use-auth-secret --static-auth-secret="$secret" \
  --realm=localhost --fingerprint --no-tls --no-dtls --no-cli --no-tcp-relay --allow-loopback-peers \
  --pidfile="${TMPDIR:-/tmp}/turnserver-dev-$port.pid" --log-file=stdout --simple-log
