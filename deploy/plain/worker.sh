#!/usr/bin/env bash
# The Dask workers of one host. They mount the raw store (read-only is enough) and the output
# root (read-write), at the paths the CSC's path_map gives for workers.
#
#   RAPID_ANALYSIS_SCHEDULER_ADDRESS  the scheduler (default tcp://127.0.0.1:8786)
#   RA_WORKER_HOST       address of this host the workers listen on (default 127.0.0.1)
#   RA_WORKER_PROCESSES  worker processes on this host (default 1)
#   RA_WORKER_THREADS    threads (job slots) per worker process (default 1)
#   RA_WORKER_MEMORY     memory limit per worker process, Dask syntax (default auto)
set -euo pipefail

# --preload: import the job code when a worker starts, not in its first job.
exec dask worker "${RAPID_ANALYSIS_SCHEDULER_ADDRESS:-tcp://127.0.0.1:8786}" \
    --host "${RA_WORKER_HOST:-127.0.0.1}" \
    --nworkers "${RA_WORKER_PROCESSES:-1}" \
    --nthreads "${RA_WORKER_THREADS:-1}" \
    --memory-limit "${RA_WORKER_MEMORY:-auto}" \
    --preload lsst.ts.rapidanalysis.dispatch.worker_setup
