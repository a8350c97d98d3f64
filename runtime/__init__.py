"""gclf runtime: torch-free image classification with an ONNX model that describes itself.

Only numpy, OpenCV and onnxruntime are needed here, so this package installs and runs on
a Raspberry Pi. Training (`gclf.train`) and export (`gclf.export`) import from this
package, never the other way round: the preprocessing contract lives here once.
"""

from gclf.runtime.errors import GclfError
from gclf.runtime.preprocess import PreprocessSpec, decode_image, preprocess, preprocess_batch

__all__ = ["GclfError", "PreprocessSpec", "decode_image", "preprocess", "preprocess_batch"]
