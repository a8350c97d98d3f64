"""The OpenVINO engine (the `openvino` extra): gclf.runtime.openvino.engine.

The only place that imports OpenVINO (pyproject.toml's import-linter contract): the core
loads this package only when an engine named "openvino" is asked for, so a base install,
and `gclf-infer --help`, never touch it. It may import the runtime's flat core (errors,
cpu_class, onnx_metadata, paths) and nothing above it.
"""
