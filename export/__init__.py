"""gclf export: checkpoint -> self-describing ONNX model (fp32), and an int8 copy.

Needs the `train` extra (torch, onnx). Calibration and checks preprocess images with
`gclf.runtime.preprocess`, the code the runtime runs on a device.
"""
