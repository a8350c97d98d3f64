"""onnxruntime's int8 convolutions on Intel AMX: the same weights, given a zero point that
takes them to MLAS's AMX kernels.

gclf's int8 files have symmetric weights (zero point 0, as gclf-export writes them). onnxruntime
runs such a convolution on MLAS's "symmetric" kernels (indirect convolution or SymmQgemm),
which have AVX-512 VNNI code but no AMX code. Its general QGEMM, taken when the weights'
zero point is not 0, has AMX kernels (TDPBUSD on 16x64 tiles). On an AMX CPU the runtime
therefore rewrites the weights in memory before onnxruntime reads them: every value one
higher and the zero point 1, so (q + 1) - 1 = q and the dequantised weights are exactly
the file's. Both kernels sum u8 x s8 products exactly in 32 bits, so the answers are the
file's own, bit for bit (measured: identical logits, AMX against the VNNI kernels); only
the speed changes. The file on disk is never changed, and other CPUs read it as it is:
without AMX the symmetric kernels are the faster ones (docs/engines.md, the figures).

The model is walked as protobuf (ModelProto.graph -> GraphProto.node / .initializer ->
TensorProto) with gclf.runtime.onnx_metadata's reader: no onnx import, and the new bytes
have the same length, so nothing but the changed values moves. Only what is recognised is
changed: a weight stored as raw int8 bytes below 127 that feeds one DequantizeLinear into a
Conv, Gemm or MatMul, with a zero point of int8 zeros (raw bytes, or int32_data varints, one
byte each as 1 is) that serves such weights alone. gclf's 7-bit weights (at most 64) all
qualify; a full 8-bit weight that reaches 127 stays on the symmetric kernels. A file laid out
otherwise (or malformed: onnxruntime then says so itself) is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gclf.runtime.onnx_metadata import WIRE_BYTES, WIRE_VARINT, MalformedMessage, message_fields, read_varint

MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER = 1, 5
NODE_INPUT, NODE_OUTPUT, NODE_OP_TYPE = 1, 2, 4
TENSOR_DATA_TYPE, TENSOR_INT32_DATA, TENSOR_NAME, TENSOR_RAW_DATA, TENSOR_DATA_LOCATION = 2, 5, 8, 9, 14
INT8 = 3  # TensorProto.DataType
WEIGHT_CONSUMERS = ("Conv", "Gemm", "MatMul")  # the weight is their second input
SHIFTED_ZERO_POINT = 1  # as an int8 byte and as a one-byte varint alike


@dataclass
class _Tensor:
    data_type: int | None = None
    raw: tuple[int, int] | None = None  # [start, end) of raw_data in the whole model's bytes
    varints: list[tuple[int, int]] = field(default_factory=list)  # int32_data's bytes, packed or not
    external: bool = False


@dataclass
class _Node:
    op_type: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def amx_weight_layout(data: bytes) -> bytes | None:
    """`data` (a serialised ONNX QDQ model) with its symmetric int8 weights moved to zero
    point 1 (see the module doc); None when nothing in it is laid out that way."""
    try:
        nodes, tensors = _graph(data)
    except (MalformedMessage, UnicodeDecodeError, ValueError):
        return None
    producer = {out: n for n in nodes for out in n.outputs}
    users: dict[str, list[_Node]] = {}
    for n in nodes:
        for name in n.inputs:
            users.setdefault(name, []).append(n)
    weight_dqs = [producer[n.inputs[1]] for n in nodes if n.op_type in WEIGHT_CONSUMERS and len(n.inputs) > 1 and n.inputs[1] in producer]
    weight_dqs = [dq for dq in weight_dqs if dq.op_type == "DequantizeLinear" and len(dq.inputs) == 3]
    weight_dq_ids = {id(dq) for dq in weight_dqs}
    values: dict[str, tuple[int, int]] = {}
    zeros: dict[str, list[tuple[int, int]]] = {}
    for dq in weight_dqs:
        q, zp = tensors.get(dq.inputs[0]), tensors.get(dq.inputs[2])
        if q is None or zp is None or not _raw_int8(q) or zp.data_type != INT8 or zp.external:
            continue
        if [id(u) for u in users.get(dq.inputs[0], [])] != [id(dq)]:
            continue  # the weight has another reader, which would see the shifted values
        if not all(id(u) in weight_dq_ids for u in users.get(dq.inputs[2], [])):
            continue  # the zero point also serves something that is not such a weight
        regions = [zp.raw] if zp.raw is not None else zp.varints
        if not regions or any(data[a:b] != bytes(b - a) for a, b in regions):
            continue  # not symmetric (already on the general kernels), or stored another way
        if 0x7F in data[q.raw[0] : q.raw[1]]:
            continue  # 127 + 1 does not fit in int8
        values[dq.inputs[0]] = q.raw
        zeros[dq.inputs[2]] = regions
    if not values:
        return None
    out = np.frombuffer(bytearray(data), dtype=np.uint8)
    for start, end in values.values():
        out[start:end] += 1  # as int8 bytes: q + 1 (no 127 among them, checked above)
    for regions in zeros.values():
        for start, end in regions:
            out[start:end] = SHIFTED_ZERO_POINT
    return out.tobytes()


def _raw_int8(tensor: _Tensor) -> bool:
    return tensor.data_type == INT8 and tensor.raw is not None and not tensor.external and tensor.raw[1] > tensor.raw[0]


def _graph(data: bytes) -> tuple[list[_Node], dict[str, _Tensor]]:
    view = memoryview(data)
    graphs = [f for f in message_fields(view) if f.number == MODEL_GRAPH and f.wire_type == WIRE_BYTES]
    if len(graphs) != 1:
        raise MalformedMessage("not one graph")
    base = graphs[0].payload
    nodes: list[_Node] = []
    tensors: dict[str, _Tensor] = {}
    for f in message_fields(view[base : graphs[0].end]):
        if f.wire_type != WIRE_BYTES:
            continue
        start = base + f.payload
        body = view[start : base + f.end]
        if f.number == GRAPH_NODE:
            nodes.append(_node(body))
        elif f.number == GRAPH_INITIALIZER:
            name, tensor = _tensor(body, start)
            if name in tensors:
                raise MalformedMessage(f"two initializers named {name!r}")
            tensors[name] = tensor
    return nodes, tensors


def _node(body: memoryview) -> _Node:
    node = _Node()
    for f in message_fields(body):
        if f.wire_type != WIRE_BYTES or f.number not in (NODE_INPUT, NODE_OUTPUT, NODE_OP_TYPE):
            continue  # attributes, names, domains: not needed
        text = bytes(body[f.payload : f.end]).decode("utf-8")
        if f.number == NODE_INPUT:
            node.inputs.append(text)
        elif f.number == NODE_OUTPUT:
            node.outputs.append(text)
        elif f.number == NODE_OP_TYPE:
            node.op_type = text
    return node


def _tensor(body: memoryview, offset: int) -> tuple[str, _Tensor]:
    name, tensor = "", _Tensor()
    for f in message_fields(body):
        if f.number == TENSOR_DATA_TYPE and f.wire_type == WIRE_VARINT:
            tensor.data_type = read_varint(body, f.payload)[0]
        elif f.number == TENSOR_NAME and f.wire_type == WIRE_BYTES:
            name = bytes(body[f.payload : f.end]).decode("utf-8")
        elif f.number == TENSOR_INT32_DATA and f.wire_type in (WIRE_BYTES, WIRE_VARINT):
            tensor.varints.append((offset + f.payload, offset + f.end))
        elif f.number == TENSOR_RAW_DATA and f.wire_type == WIRE_BYTES:
            tensor.raw = (offset + f.payload, offset + f.end)
        elif f.number == TENSOR_DATA_LOCATION:
            tensor.external = f.wire_type != WIRE_VARINT or read_varint(body, f.payload)[0] != 0  # 1: EXTERNAL
    return name, tensor
