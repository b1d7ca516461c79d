"""The simulated observatory: raws in the camera's own format with their truth, camera and mount
simulators on DDS, and the demo.

Submodules are imported on demand (``from lsst.ts.rapidanalysis.sim.stream import StreamWriter``):
rendering pulls in scipy and astropy, which the CSC itself does not need at start-up.
"""
