#!/usr/bin/env bash
# Runs the original PocketFlow 0.0.3 test suite against minllm, with only the
# import line changed (`from pocketflow import` -> `from minllm import`).
# The suite ships in the sdist on PyPI; it is fetched here, never committed.
# Usage: scripts/pocketflow_compat.sh PYTHON   (a Python with minllm installed)
set -euo pipefail
PY=${1:-python3}
case "$PY" in
  */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;;
  *) PY="$(command -v "$PY")" ;;
esac
cd "$(dirname "$0")/.."
WORK=target/pocketflow-compat
rm -rf "$WORK" && mkdir -p "$WORK"
"$PY" -m pip download --quiet --no-deps --no-binary :all: pocketflow==0.0.3 -d "$WORK"
tar -xzf "$WORK"/pocketflow-0.0.3.tar.gz -C "$WORK"
SRC="$WORK/pocketflow-0.0.3"
# Remove the original package so that nothing can import it by accident.
rm -rf "$SRC/pocketflow"
changed=0
for f in "$SRC"/tests/test_*.py; do
  sed -i 's/^from pocketflow import/from minllm import/' "$f"
  if grep -q "pocketflow" "$f"; then echo "unexpected reference to pocketflow left in $f" >&2; exit 1; fi
  changed=$((changed + 1))
done
echo "running the original suite ($changed files, import line changed) against minllm"
cd "$SRC" && "$PY" -m pytest -q -p no:cacheprovider tests
