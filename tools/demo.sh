#!/usr/bin/env bash
# make demo: a local anvil, the deployment, and a trader's day with a session key, then a clean exit.
# Everything runs against a fresh anvil on a free port, which is stopped on exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
rpc="http://127.0.0.1:$port"
log=$(mktemp -t keyscope-anvil.XXXXXX)

anvil --port "$port" --silent >"$log" 2>&1 &
anvil_pid=$!
cleanup() {
  kill "$anvil_pid" 2>/dev/null || true
  wait "$anvil_pid" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 100); do
  cast chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break
  sleep 0.1
done
cast chain-id --rpc-url "$rpc" >/dev/null 2>&1 || { echo "anvil did not start:"; cat "$log"; exit 1; }
echo "anvil listening on $rpc"

echo "== deploying (script/Deploy.s.sol) =="
# forge script can print a failed transaction and still exit 0: treat any "Error" as failure.
run_script() {
  local out status=0
  out=$(mktemp -t keyscope-script.XXXXXX)
  forge script "$@" --rpc-url "$rpc" --broadcast --slow >"$out" 2>&1 || status=$?
  if [ "$status" -ne 0 ] || grep -q "Error" "$out"; then cat "$out"; rm -f "$out"; return 1; fi
  SCRIPT_OUTPUT=$(cat "$out"); rm -f "$out"
}
run_script script/Deploy.s.sol
cat "deployments/$(cast chain-id --rpc-url "$rpc").json"; echo

echo "== the trader's day (script/Demo.s.sol) =="
# handleOps needs gas for the ops' full limits, not what they end up using: the script is the bundler,
# so its transactions carry 4x forge's estimate.
run_script script/Demo.s.sol --gas-estimate-multiplier 400
sed -n '/== Keyscope demo/,/^$/p' <<<"$SCRIPT_OUTPUT"

echo "== checked on chain after the transactions were mined =="
venue=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["venue"])' "deployments/$(cast chain-id --rpc-url "$rpc").json")
liquidations=$(cast logs --rpc-url "$rpc" --address "$venue" 'Liquidated(address,uint32,address,int256,uint256,uint256,uint256)' | grep -c '^- address' || true)
margin_calls=$(cast logs --rpc-url "$rpc" --address "$venue" 'MarginCall(address,int256,uint256,uint256)' | grep -c '^- address' || true)
echo "MarginCall events: $margin_calls; Liquidated events: $liquidations"
[ "$margin_calls" -ge 1 ] && [ "$liquidations" -ge 1 ] || { echo "demo: expected a margin call and a liquidation on chain"; exit 1; }
echo "demo finished; anvil stopped."
