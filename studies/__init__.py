"""gclf studies: the work that uses training, export and the runtime together.

The quick start (`gclf-quickstart`), the study's experiments and the input-size trade-off
(`gclf-experiment`), and the side-by-side benchmark (`gclf-bench`, whose PyTorch row is the
only part that needs the `train` extra). This package sits on top of the others: nothing
below imports it (the layers contract in pyproject.toml, checked by tests/system/test_layers.py).
"""
