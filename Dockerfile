# One image for every process of Rapid Analysis:
#   the CSC            run_rapid_analysis <index>          (1 LATISS, 2 LSSTComCam, 3 LSSTCam)
#   the Dask scheduler dask scheduler
#   the Dask workers   dask worker <scheduler address> --nthreads N \
#                          --preload lsst.ts.rapidanalysis.dispatch.worker_setup
# Workers and CSC must run the same version of the package (a worker's pipelines answer the CSC's
# jobs), which one image guarantees. Configuration, DDS settings, database credentials and data
# come from the deployment (environment, mounted files), never from the image.
#
#   docker build -t lsst-ts/rapidanalysis:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Only what the package build reads (see .dockerignore); installed as a regular, non-editable
# package so that the source tree is not needed at run time.
COPY pyproject.toml README.md LICENSE /tmp/src/
COPY python /tmp/src/python
RUN pip install /tmp/src && rm -rf /tmp/src

# A fixed, unprivileged uid/gid so that files written on shared volumes (products) have a
# predictable owner; Kubernetes manifests set the same ids in their securityContext.
RUN groupadd --gid 1000 rapid && useradd --uid 1000 --gid 1000 --create-home rapid
USER 1000:1000
WORKDIR /home/rapid

# 8786 Dask scheduler comm, 8787 its dashboard/health endpoint (workers listen on random ports).
EXPOSE 8786 8787

# Each deployment names its process; without one the image says what it can run.
CMD ["run_rapid_analysis", "--help"]
