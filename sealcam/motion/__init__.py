"""Motion and object detection as a library: decode, detector, tamper monitor, event rules, object detectors.

Pure logic on frames (numpy arrays) plus the ffmpeg decoder subprocess; no bus, no network. The motion service
(services/motion) runs it on the plain bus; `sealcam motion scan` runs it on a file. Needs the `motion` extra
(numpy, opencv-python-headless); object detection needs `detect` or `detect-onnx` (docs/design/motion.md).
"""
