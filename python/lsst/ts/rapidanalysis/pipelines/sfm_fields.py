"""The ``sfmDetectorMetrics`` fields sfm copies from its per-detector metrics as they are.

A module of its own, without sfm's imports, so that a stand-in for sfm (``test.cost``, which
returns sfm's result shape for the scale benchmark) uses the same list without importing sfm.
"""

__all__ = ["TELEMETRY_FIELDS"]

#: Besides these, the sample carries ``imageName`` and the flags.
TELEMETRY_FIELDS = (
    "detector",
    "detectorName",
    "psfSigma",
    "psfFwhm",
    "psfArea",
    "psfIxx",
    "psfIyy",
    "psfIxy",
    "e1",
    "e2",
    "nPsfStar",
    "nSource",
    "skyBg",
    "skyNoise",
    "meanVar",
    "zeroPoint",
    "magLim",
    "effTime",
    "effTimePsfSigmaScale",
    "effTimeSkyBgScale",
    "effTimeZeroPointScale",
    "postIsrPixelMedian",
    "expTime",
)
