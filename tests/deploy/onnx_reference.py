"""Runs an ONNX model hwnas exported, op by op, with numpy (and torch for convolution and
pooling), following the ONNX operator specifications; Debian has no onnxruntime.  Only the
operators hwnas's exporter emits are implemented; any other one is an error.

usage: onnx_reference.py MODEL.onnx INPUT.bin EXPECTED.bin SHAPE   (SHAPE: "3,1,28,28")
prints "max_abs_diff X" between the model's output and EXPECTED (raw little-endian float32).
"""
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def run(model, x):
    env = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    env[model.graph.input[0].name] = x
    for node in model.graph.node:
        a = attrs(node)
        ins = [env[i] for i in node.input]
        op = node.op_type
        if op == "Add":
            out = [ins[0] + ins[1]]
        elif op == "Mul":
            out = [ins[0] * ins[1]]
        elif op == "MatMul":
            out = [np.matmul(ins[0], ins[1])]
        elif op == "Relu":
            out = [np.maximum(ins[0], 0)]
        elif op == "Sigmoid":
            out = [1 / (1 + np.exp(-ins[0]))]
        elif op == "Tanh":
            out = [np.tanh(ins[0])]
        elif op == "Identity":
            out = [ins[0]]
        elif op == "Flatten":
            ax = a.get("axis", 1)
            out = [ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)]
        elif op == "Transpose":
            out = [np.transpose(ins[0], a["perm"])]
        elif op == "Reshape":
            shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(ins[1])]
            out = [ins[0].reshape(shape)]
        elif op == "Split":
            idx = np.cumsum(ins[1])[:-1]
            out = np.split(ins[0], idx, axis=a.get("axis", 0))
        elif op == "Softmax":
            z = ins[0] - ins[0].max(axis=a.get("axis", -1), keepdims=True)
            e = np.exp(z)
            out = [e / e.sum(axis=a.get("axis", -1), keepdims=True)]
        elif op == "ReduceMean":
            out = [ins[0].mean(axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1)))]
        elif op == "Concat":
            out = [np.concatenate(ins, axis=a["axis"])]
        elif op == "GlobalAveragePool":
            out = [ins[0].mean(axis=(2, 3), keepdims=True)]
        elif op == "BatchNormalization":
            xx, g, b, m, v = ins
            sh = (1, -1) + (1,) * (xx.ndim - 2)
            eps = a.get("epsilon", 1e-5)
            out = [(xx - m.reshape(sh)) / np.sqrt(v.reshape(sh) + eps) * g.reshape(sh) + b.reshape(sh)]
        elif op == "LayerNormalization":
            xx, g, b = ins
            assert a.get("axis", -1) == -1
            mu = xx.mean(axis=-1, keepdims=True)
            var = ((xx - mu) ** 2).mean(axis=-1, keepdims=True)
            out = [(xx - mu) / np.sqrt(var + a.get("epsilon", 1e-5)) * g + b]
        elif op in ("QuantizeLinear", "DequantizeLinear"):
            x, scale, zp = ins
            if scale.ndim == 1:  # per-axis: scale and zero point run along `axis`
                sh = [1] * x.ndim
                sh[a.get("axis", 1)] = -1
                scale, zp = scale.reshape(sh), zp.reshape(sh)
            if op == "QuantizeLinear":
                q = np.rint(x / scale) + zp.astype(np.float32)
                out = [np.clip(q, -128, 127).astype(np.int8)]
            else:
                out = [((x.astype(np.int32) - zp.astype(np.int32)) * scale).astype(np.float32)]
        elif op in ("Conv", "MaxPool", "AveragePool"):
            t = torch.from_numpy(np.ascontiguousarray(ins[0]))
            p = a.get("pads", [0, 0, 0, 0])
            assert p[0] == p[2] and p[1] == p[3], p
            pad, stride = (p[0], p[1]), tuple(a.get("strides", [1, 1]))
            if op == "Conv":
                w = torch.from_numpy(np.ascontiguousarray(ins[1]))
                b = torch.from_numpy(ins[2]) if len(ins) > 2 else None
                r = F.conv2d(t, w, b, stride, pad, 1, a.get("group", 1))
            elif op == "MaxPool":
                r = F.max_pool2d(t, tuple(a["kernel_shape"]), stride, pad)
            else:
                r = F.avg_pool2d(t, tuple(a["kernel_shape"]), stride, pad,
                                 count_include_pad=bool(a.get("count_include_pad", 0)))
            out = [r.numpy()]
        else:
            raise SystemExit(f"onnx_reference: operator {op} is not implemented here")
        for name, value in zip(node.output, out):
            env[name] = np.asarray(value, dtype=value.dtype if value.dtype == np.int8 else np.float32)
    return env[model.graph.output[0].name]


def main():
    model = onnx.load(sys.argv[1])
    shape = [int(v) for v in sys.argv[4].split(",")]
    x = np.fromfile(sys.argv[2], dtype="<f4").reshape(shape)
    want = np.fromfile(sys.argv[3], dtype="<f4")
    with torch.no_grad():
        got = run(model, x).reshape(-1)
    assert got.shape == want.shape, (got.shape, want.shape)
    print("max_abs_diff %.6e" % float(np.abs(got - want).max()))


if __name__ == "__main__":
    main()
