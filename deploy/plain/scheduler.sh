#!/usr/bin/env bash
# The Dask scheduler of a Rapid Analysis cluster without Kubernetes. It mounts no data.
#
#   RA_SCHEDULER_HOST     address to listen on (default 127.0.0.1: this machine only)
#   RA_SCHEDULER_PORT     port (default 8786)
#   RA_DASHBOARD_ADDRESS  dashboard and /health (default 127.0.0.1:8787)
set -euo pipefail

# A job whose worker dies is run once more elsewhere; a second death ends it (reported in its
# jobResult) instead of killing worker after worker. Keep it equal to the CSC's job_reruns.
export DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1

# The preload makes adaptive_target (what an autoscaler asks) count the CSCs' own queues.
exec dask scheduler \
    --host "${RA_SCHEDULER_HOST:-127.0.0.1}" \
    --port "${RA_SCHEDULER_PORT:-8786}" \
    --dashboard-address "${RA_DASHBOARD_ADDRESS:-127.0.0.1:8787}" \
    --preload lsst.ts.rapidanalysis.dispatch.scheduler_setup
