"""Frame-level detectors: pure numpy/OpenCV functions on a downscaled frame, shared by the rules of a camera."""
