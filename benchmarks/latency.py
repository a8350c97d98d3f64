"""Latency/throughput benchmark, side by side in one run (issue: fastest CPU runtime).

    python -m benchmarks.latency RUN_DIR/model.onnx [--images DIR] [gclf-bench options]

The same as `gclf-bench`: PyTorch eager, OpenCV DNN, onnxruntime fp32 and int8, and gclf's
file->label path, with ratios against onnxruntime fp32 at batch 1. It prints its figures and
asserts nothing: speed depends on the machine and on what else runs on it.
"""

from gclf.studies.bench_cli import main

if __name__ == "__main__":
    main()
