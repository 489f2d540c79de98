#!/usr/bin/env bash
# A cron or CI job: compare the inputs the production model saw lately with the drift reference
# its package carries, and roll the `production` alias back when they drifted (docs/drift.md).
#
#   MODEL=digits-cnn LIVE=/data/live-last-24h.npz REGISTRY=sqlite:///runs/mlruns.db ./examples/drift_job.sh
#
# LIVE is an .npz with one array per model input name (single-input models: that name or `x`),
# collected by the app; crontab line: `0 3 * * * cd /srv/edgeopt && ./examples/drift_job.sh`.
# Thresholds: the package's own (its target profile's [drift]), or BUDGETS=FILE with a [drift] table.
# Exit codes: 0 no drift, 1 drift (rolled back, or nothing to roll back to), 2 bad input, 3 crash.
set -u

MODEL="${MODEL:?set MODEL to the registered model name}"
LIVE="${LIVE:?set LIVE to the live inputs .npz}"
REGISTRY="${REGISTRY:-${MLFLOW_TRACKING_URI:-sqlite:///runs/mlruns.db}}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The package in production, verified on download (hashes, and the signature with --public-key).
edgeopt registry pull "$MODEL@production" --out "$WORK" --registry "$REGISTRY" || exit $?
PACKAGE="$(ls "$WORK"/*.zip)"

edgeopt drift "$PACKAGE" --data "$LIVE" --markdown "$WORK/drift.md" ${BUDGETS:+--budgets "$BUDGETS"}
status=$?
[ -n "${GITHUB_STEP_SUMMARY:-}" ] && [ -f "$WORK/drift.md" ] && cat "$WORK/drift.md" >> "$GITHUB_STEP_SUMMARY"

case $status in
  0) echo "drift job: no drift" ;;
  1) echo "drift job: live inputs drifted; rolling back $MODEL@production" >&2
     # Exit 1 with the alias unchanged when no earlier version held it: a person must decide.
     edgeopt registry rollback "$MODEL" --alias production --registry "$REGISTRY"
     exit 1 ;;
  *) echo "drift job: edgeopt drift failed (exit $status); nothing changed" >&2 ;;
esac
exit $status
