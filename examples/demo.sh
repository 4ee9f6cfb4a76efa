#!/usr/bin/env bash
# durafile's main job on a real example: keep an application's JSON state file safe while
# many processes update it at once. Run from the repository root after `cargo build --release`.
set -euo pipefail
# The demo's updaters are jq programs; install jq on a fresh machine when we may.
if ! command -v jq >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && apt-get install -y -qq jq
  else
    echo "demo: please install jq (the demo's updaters are jq programs)" >&2
    exit 2
  fi
fi
bin=${DURAFILE:-target/release/durafile}
dir=target/demo
mkdir -p "$dir"
state=$dir/state.json

echo "1. Install the initial state atomically, refusing anything that is not JSON:"
"$bin" write "$state" --json < examples/state.json
echo '{"truncated": ' | "$bin" write "$state" --json || echo "   (refused, and $state is unchanged)"

echo "2. 8 processes x 25 concurrent read-modify-writes with jq, under durafile's lock:"
before=$(jq .launches "$state")
for _ in $(seq 8); do
  (for _ in $(seq 25); do "$bin" update "$state" --json -- jq '.launches += 1'; done) &
done
wait
after=$(jq .launches "$state")
echo "   launches: $before -> $after (expected $((before + 200)): no update lost)"
[ "$after" -eq $((before + 200)) ]

echo "3. Hold the lock from one process while another writer waits, then gives up:"
"$bin" lock "$state" -- sleep 1 &
sleep 0.3
"$bin" write "$state" --timeout 0.3 < examples/state.json \
  || echo "   (the writer timed out; $state is unchanged)"
wait

echo "4. The result, and the directory (the hidden .lock file stays; no temp file remains):"
"$bin" cat "$state" | jq -c '{launches, cursor}'
ls -A "$dir"
