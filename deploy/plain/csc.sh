#!/usr/bin/env bash
# The Rapid Analysis CSC: csc.sh INDEX [run_rapid_analysis options], INDEX 1 LATISS,
# 2 LSSTComCam, 3 LSSTCam. It mounts the raw store (read-only) and the output root.
#
#   LSST_SITE                  selects _$LSST_SITE.yaml in the configuration directory (required)
#   LSST_DDS_PARTITION_PREFIX  shared by every component that talks to this one (required)
#   CYCLONEDDS_URI             the site's Cyclone DDS file (unset: loopback only)
#   TS_CONFIG_OCS_DIR          holds RapidAnalysis/v1/ (default: this recipe's config/)
#   and whatever $VARIABLES the site file uses (RAPID_ANALYSIS_SCHEDULER_ADDRESS, ...).
set -euo pipefail

: "${LSST_SITE:?set LSST_SITE (e.g. local, lab)}"
: "${LSST_DDS_PARTITION_PREFIX:?set LSST_DDS_PARTITION_PREFIX (e.g. $USER for a private test)}"
TS_CONFIG_OCS_DIR="${TS_CONFIG_OCS_DIR:-$(cd "$(dirname "$0")" && pwd)/config}"
export TS_CONFIG_OCS_DIR

exec run_rapid_analysis "$@"
