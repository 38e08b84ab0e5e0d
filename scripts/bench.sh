#!/usr/bin/env bash
# bench.sh [GROUP] — run benchmark groups against a throwaway PostgreSQL.
# Groups: ingest, protocol, spool, agent, api, query, plugins, realtime, backup, alerts, console. Each prints its headline
# figures as `figure: NAME VALUE UNIT` lines.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=${GOFLAGS:--buildvcs=false}

run() { # package, bench regexp, benchtime
  if ! go list "$1" >/dev/null 2>&1; then
    echo "# bench: $1 does not exist yet; skipped" >&2
    return 0
  fi
  go test -run '^$' -bench "$2" -benchtime "$3" -benchmem "$1"
}

# The agent group runs every BenchmarkAgent* of ./agent/...: the uplink's
# backfill drain, BenchmarkAgentSpoolPerDay (spool_mb_per_day_5000vms: spool
# bytes a day offline adds at 5,000 VMs; builds var/bench/spool-inv5000
# once), BenchmarkAgentVCenterLoad (vcenter_* figures: what collecting
# 1,000 VMs costs the simulator in calls, bytes and CPU, against a
# Telegraf-like reference client; builds var/bench/inv1000 once),
# BenchmarkAgentIdleCPU (agent_idle_cpu_ms_per_s: the agent's own CPU
# between cycles, against the settings before issue #15), then the
# end-to-end collection benchmark.
group() {
  case "$1" in
    ingest) run ./aggregator/internal/ingest/ 'BenchmarkIngest$' 4x ;;
    protocol) run ./protocol/ . 1s ;;
    spool) run ./agent/internal/spool/ . 2s ;;
    agent) run ./agent/... 'BenchmarkAgent' 1x; run ./scripts/e2e/ 'BenchmarkAgentCollect' 1x ;;
    api) run ./aggregator/internal/httpapi/ 'Benchmark(AuthOverhead|Login)$' 1s
      run ./aggregator/internal/httpapi/ 'BenchmarkSettingsCollectionPush$' 50x
      # BenchmarkAPIVMs loads the server from wrk (a separate process); said aloud when installed, skipped when impossible.
      command -v wrk >/dev/null || if [ "$(id -u)" = 0 ]; then echo "# bench: installing wrk for BenchmarkAPIVMs: apt-get install -y wrk" >&2
        apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } || echo "# bench: could not install wrk: BenchmarkAPIVMs skips" >&2
      else echo "# bench: wrk is not installed and this is not root: BenchmarkAPIVMs skips (apt-get install -y wrk)" >&2; fi
      run ./aggregator/internal/httpapi/ 'BenchmarkAPIVMs$' 1x ;;
    query) run ./aggregator/internal/store/ 'BenchmarkHistory' 1x; run ./aggregator/internal/store/ 'BenchmarkHygiene$' 1x ;;
    realtime) run ./aggregator/internal/httpapi/ 'BenchmarkRealtime$' 30x ;;
    backup) run ./aggregator/internal/backup/ 'BenchmarkBackupRestore$' 1x; run ./aggregator/internal/jobs/ 'BenchmarkReorder$' 1x; run ./aggregator/internal/audit/ 'BenchmarkAppendVCenterEvents$' 1x ;;
    plugins) run ./plugins/sdk/host/ 'BenchmarkNotifyNoop$' 5000x; run ./plugins/sdk/host/ 'BenchmarkRestart$' 20x; run ./agent/internal/collectors/ 'BenchmarkPromexecCycle$' 5x ;;
    alerts) run ./aggregator/internal/alert/ 'BenchmarkAlert(Eval|FireToNotify)$' 3x; run ./aggregator/internal/alert/ 'BenchmarkAlert(LateReplay|StormKill9)$' 1x ;;
    # The web console in headless Chromium (built first): FCP, overview ready with 50 sites and 10,000 VMs, the 86,400-point chart, initial JS,
    # and Lighthouse (npm, aggregator/web's devDependency, on the system Chromium) on the login page and the overview, phone and desktop.
    console) aggregator/web/scripts/console.sh build >&2 && run ./aggregator/internal/console/e2e/ 'BenchmarkConsole$' 1x ;;
    *) echo "bench: unknown group $1 (ingest, protocol, spool, agent, api, query, plugins, realtime, backup, alerts, console)" >&2; return 2 ;;
  esac
}

groups=${1:-ingest protocol spool agent api plugins}
# go test prints a benchmark's name before running it, so a figure printed
# by the benchmark can land on that line: put every figure on its own line.
scripts/pg.sh with bash -c "$(declare -f run group); set -euo pipefail; for g in $groups; do echo \"== \$g\"; group \$g; done" 2>&1 \
  | sed -u 's/\(.\)figure: /\1\nfigure: /' | tee /tmp/vmpulse-bench.log
echo
echo "== headline figures"
grep '^figure:' /tmp/vmpulse-bench.log || true
