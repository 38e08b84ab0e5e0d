#!/usr/bin/env bash
# demo.sh — the whole system on this machine: a throwaway PostgreSQL, an
# in-process vCenter simulator, the aggregator, and one enrolled agent.
# Everything lives under var/demo and is removed on Ctrl-C (kept, with the
# logs, when DEMO_KEEP=1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=$root/var/demo
VMS=${VMS:-60}
rm -rf "$demo"
mkdir -p "$demo"
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "demo: stopping..."
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${DEMO_KEEP:-}" ]; then
    psql_dir=$demo/pg; scripts/pg.sh pause "$psql_dir" 2>/dev/null || true
    echo "demo: stopped; DEMO_KEEP is set, so $demo (logs, data) is kept"
  else
    scripts/pg.sh stop "$demo/pg" 2>/dev/null || true
    rm -rf "$demo"
    echo "demo: stopped and cleaned up"
  fi
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # description, command...
  local what=$1; shift
  for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "demo: $what did not come up. Last log lines:" >&2
  for f in "$demo"/*.log; do echo "--- $f" >&2; tail -n 15 "$f" >&2; done
  exit 1
}

echo "demo: starting PostgreSQL..."
dburl=$(scripts/pg.sh start "$demo/pg")
db=${dburl%/postgres*}/vmpulse?sslmode=disable
psql -q "$dburl" -c "CREATE DATABASE vmpulse" >/dev/null

vport=$(free_port); iport=$(free_port); hport=$(free_port)
echo "demo: starting the vCenter simulator ($VMS VMs)..."
bin/vcsim -vms "$VMS" -listen "127.0.0.1:$vport" -url-file "$demo/vcsim.url" >"$demo/vcsim.out" 2>"$demo/vcsim.log" &
pids+=($!)
wait_for "the simulator" test -s "$demo/vcsim.url"

cat >"$demo/aggregator.yml" <<YML
database_url: $db
data_dir: $demo/aggregator
ingest:
  listen: 127.0.0.1:$iport
  server_names: [localhost, 127.0.0.1]
http:
  listen: 127.0.0.1:$hport
YML
# The notifier plugins `make build` wrote to bin/plugins go in the
# aggregator's data_dir/plugins, pinned by their lines of bin/plugins/SHA256SUMS
# (no plugins: section in aggregator.yml, so the aggregator reads that file).
# promexec is the agent's collector plugin and stays out.
plugins=$demo/aggregator/plugins
mkdir -p -m 700 "$demo/aggregator" && mkdir -p "$plugins"
for p in webhook email dingtalk wecom feishu; do
  [ -x "bin/plugins/$p" ] || { echo "demo: bin/plugins/$p is missing: run make build" >&2; exit 1; }
  cp "bin/plugins/$p" "$plugins/"
  grep -E "^[0-9a-f]{64} [ *]$p\$" bin/plugins/SHA256SUMS >>"$plugins/SHA256SUMS" ||
    { echo "demo: bin/plugins/SHA256SUMS does not pin $p: run make build" >&2; exit 1; }
done
(cd "$plugins" && sha256sum --quiet -c SHA256SUMS) || { echo "demo: the plugins in $plugins do not match bin/plugins/SHA256SUMS: run make build" >&2; exit 1; }

echo "demo: starting the aggregator..."
bin/vmpulse-aggregator serve -config "$demo/aggregator.yml" 2>"$demo/aggregator.log" &
pids+=($!)
wait_for "the aggregator" curl -sf "http://127.0.0.1:$hport/readyz"

adminpw=$(bin/vmpulse-aggregator user create-admin -config "$demo/aggregator.yml" -username admin -email admin@demo.local 2>/dev/null)
token=$(bin/vmpulse-aggregator enroll-token -config "$demo/aggregator.yml" -site demo -ttl 10m 2>/dev/null)
cat >"$demo/agent.yml" <<YML
name: demo-agent
data_dir: $demo/agent
aggregator:
  address: 127.0.0.1:$iport
  server_name: localhost
endpoints:
  - name: vcsim
    url: $(cat "$demo/vcsim.url")
    username: vmpulse
    password_env: DEMO_VC_PASSWORD
    insecure: true
YML
echo "demo: enrolling and starting the agent..."
DEMO_VC_PASSWORD=vmpulse VMPULSE_ENROLL_TOKEN=$token bin/vmpulse-agent -config "$demo/agent.yml" 2>"$demo/agent.log" &
pids+=($!)
wait_for "the agent's first batch" bash -c "[ \"\$(psql -Atq '$db' -c 'SELECT count(*) FROM ingest_ledger')\" -gt 0 ]"

cat <<TXT

vmpulse demo is running.

  Web console       http://127.0.0.1:$hport/   (log in as admin / $adminpw)
  REST API          http://127.0.0.1:$hport/api/v1   (OpenAPI: /api/v1/openapi.json, health: /healthz /readyz)
  API login         admin / $adminpw
  aggregator QUIC   127.0.0.1:$iport (agents, mutual TLS)
  vCenter simulator $(cat "$demo/vcsim.url")  (user vmpulse / vmpulse)
  PostgreSQL        psql '$db'
  logs              $demo/{aggregator,agent,vcsim}.log
  notifier plugins  $plugins (webhook, email, dingtalk, wecom, feishu; pinned by its SHA256SUMS)

Samples arriving (realtime data every 20 s):
  psql '$db' -c "SELECT entity_kind, count(DISTINCT entity_id) AS entities, count(*) AS samples, max(ts) AS newest FROM samples_named GROUP BY 1"
Inventory and events:
  psql '$db' -c "SELECT kind, count(*) FROM inventory_objects WHERE deleted_at IS NULL GROUP BY 1"
  psql '$db' -c "SELECT time, type, username, entity_name FROM vcenter_events ORDER BY time DESC LIMIT 10"
Log in and ask who you are (every route is in /api/v1/openapi.json):
  tok=\$(curl -s http://127.0.0.1:$hport/api/v1/auth/login -H 'Content-Type: application/json' \\
        -d '{"username":"admin","password":"$adminpw"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["access_token"])')
  curl -s http://127.0.0.1:$hport/api/v1/auth/me -H "Authorization: Bearer \$tok"
VMs (filters: site, datacenter, cluster, host, power_state, tools_status, tag, group, q) and fleet counts:
  curl -s 'http://127.0.0.1:$hport/api/v1/vms?power_state=poweredOff&page_size=5' -H "Authorization: Bearer \$tok"
  curl -s http://127.0.0.1:$hport/api/v1/vms/stats -H "Authorization: Bearer \$tok"
Metric history (the catalog, then one VM's last hour with coverage; ids are source:moref from /vms):
  curl -s http://127.0.0.1:$hport/api/v1/metrics -H "Authorization: Bearer \$tok"
  id=\$(curl -s 'http://127.0.0.1:$hport/api/v1/vms?power_state=poweredOn&page_size=1' -H "Authorization: Bearer \$tok" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["items"][0]["id"])')
  curl -s "http://127.0.0.1:$hport/api/v1/vms/\$id/metrics?metric=cpu.usage.average" -H "Authorization: Bearer \$tok"
The agent registry:
  curl -s http://127.0.0.1:$hport/api/v1/agents -H "Authorization: Bearer \$tok"
  psql '$db' -c "SELECT name, site, agent_is_live(connected, lease_until) AS connected, spool_depth, collection_lag_ms, last_seen FROM agents"

Press Ctrl-C to stop and clean up.
TXT
while sleep 20; do
  n=$(psql -Atq "$db" -c "SELECT count(*) FROM samples_named" 2>/dev/null || echo "?")
  echo "demo: $(date +%T) samples stored: $n"
done
