#!/usr/bin/env bash
# Re-runs every scenario of tests/jobs/scenarios against the real upparat
# (or CLIENT='<command>'; '-c <ini>' is appended) and diffs the normalized
# transcripts with tests/fixtures/jobs/. Exit status 1 on any difference
# or failed run. UPDATE=1 rewrites the fixtures instead.
# Usage: tests/jobs/check_reference.sh [scenario-name...]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$here/../fixtures/jobs
client=${CLIENT:-/opt/otalite-ci/upparat-venv/bin/upparat}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

if [ $# -gt 0 ]; then names=("$@"); else
  names=(); for f in "$here"/scenarios/*.json; do names+=("$(basename "$f" .json)"); done
fi
status=0
for n in "${names[@]}"; do
  start=$SECONDS
  if ! python3 "$here/run_scenario.py" "$here/scenarios/$n.json" --client "$client" \
       --out "$out/$n.json" 2>"$out/$n.log"; then
    echo "FAIL $n: run failed"; sed 's/^/    /' "$out/$n.log"; status=1; continue
  fi
  if [ "${UPDATE:-0}" = 1 ]; then
    cp "$out/$n.json" "$fixtures/$n.json"; echo "updated $n ($((SECONDS - start))s)"
  elif diff -u "$fixtures/$n.json" "$out/$n.json" >"$out/$n.diff"; then
    echo "ok   $n ($((SECONDS - start))s)"
  else
    echo "DIFF $n:"; cat "$out/$n.diff"; status=1
  fi
done
exit $status
