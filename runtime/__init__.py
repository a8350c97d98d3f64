"""gclf runtime: torch-free image classification with an ONNX model that describes itself.

Only numpy, OpenCV and onnxruntime are needed here, so this package installs and runs on
a Raspberry Pi. Training (`gclf.train`) and export (`gclf.export`) import from this
package, never the other way round: the preprocessing contract lives here once
(`gclf.runtime.preprocess`).

Nothing is imported here on purpose: `gclf-infer --help` must start fast, and numpy/OpenCV
alone take a few hundred milliseconds to import on a small CPU.
"""
