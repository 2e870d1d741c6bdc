"""Runs a small TensorFlow Lite model as a PyTorch module, read straight from its `.tflite` file.

The face models bundled with the package (see `aenerf_ns/faces/face_models/README.md`) are TFLite flatbuffers.
The TFLite runtime cannot run all of them (the person segmenter uses a custom transposed-convolution op),
wants numpy 2 in its newer builds, and runs one image at a time on the CPU. Executing the graph with torch
removes all three limits: frames are processed in batches, on the GPU when there is one, in the same
environment as nerfstudio.

Only the operators these models use are implemented; any other operator raises `TFLiteGraphError` when
the file is loaded, never silently at run time. Tensors keep TFLite's meaning (NHWC), but 4-D tensors are
held as NCHW internally, so convolutions map onto torch's kernels without copies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

try:  # the flatbuffer schema readers; pure Python
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator
except ImportError:  # pragma: no cover - declared dependency
    tflite = None

_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64, 9: np.int8, 3: np.uint8}


class TFLiteGraphError(RuntimeError):
    """The model file cannot be read or uses an operator this runner does not implement."""


def _op_names() -> dict[int, str]:
    return {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}


def _to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x


def _to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding: the output has ceil(size / stride) entries; the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _activation(x: torch.Tensor, code: int) -> torch.Tensor:
    if code == 0:
        return x
    if code == 1:
        return F.relu(x)
    if code == 2:
        return x.clamp(-1, 1)
    if code == 3:
        return x.clamp(0, 6)
    if code == 4:
        return torch.tanh(x)
    raise TFLiteGraphError(f"fused activation {code} is not supported")


def _options(op, cls):
    table = op.BuiltinOptions()
    opts = cls()
    if table is not None:
        opts.Init(table.Bytes, table.Pos)
    return opts


class TFLiteGraph(nn.Module):
    """A TFLite model's main subgraph as a torch module.

    `forward` takes the model inputs in TFLite layout (NHWC float32, any batch size) and returns the
    outputs in TFLite layout, in the model's output order.
    """

    def __init__(self, path: Path):
        super().__init__()
        if tflite is None:
            raise TFLiteGraphError("the 'tflite' package is required to read face models: pip install tflite")
        path = Path(path)
        if not path.is_file():
            raise TFLiteGraphError(f"model file {path} does not exist")
        buf = path.read_bytes()
        if buf[4:8] != b"TFL3":
            raise TFLiteGraphError(f"{path} is not a TFLite model (no TFL3 file identifier): damaged or wrong file")
        try:
            model = tflite.Model.GetRootAsModel(buf, 0)
            graph = model.Subgraphs(0)
        except Exception as exc:  # flatbuffers raises assorted errors on damaged files
            raise TFLiteGraphError(f"{path} is not a readable TFLite model ({exc})") from None
        if graph is None:
            raise TFLiteGraphError(f"{path} holds no model graph: damaged or wrong file")
        self.name = path.stem
        names = _op_names()
        tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
        self.shapes = [t.ShapeAsNumpy().tolist() if t.ShapeLength() else [] for t in tensors]
        self.inputs = [graph.Inputs(i) for i in range(graph.InputsLength())]
        self.outputs = [graph.Outputs(i) for i in range(graph.OutputsLength())]

        constants: dict[int, np.ndarray] = {}
        for i, t in enumerate(tensors):
            data = model.Buffers(t.Buffer()).DataAsNumpy() if t.Buffer() > 0 else 0
            if isinstance(data, np.ndarray) and data.size:
                dtype = _NUMPY_TYPES.get(t.Type())
                if dtype is None:
                    raise TFLiteGraphError(f"{path}: tensor {t.Name()!r} has unsupported type {t.Type()}")
                constants[i] = np.frombuffer(data.tobytes(), dtype=dtype).reshape(self.shapes[i])

        self.ops: list[tuple[str, list[int], list[int], dict]] = []
        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            code_entry = model.OperatorCodes(op.OpcodeIndex())
            code = max(code_entry.BuiltinCode(), code_entry.DeprecatedBuiltinCode())
            name = names.get(code, str(code))
            if name == "CUSTOM":
                name = "CUSTOM:" + code_entry.CustomCode().decode()
            ins = [op.Inputs(j) for j in range(op.InputsLength())]
            outs = [op.Outputs(j) for j in range(op.OutputsLength())]
            if name == "DEQUANTIZE" and ins[0] in constants:
                constants[outs[0]] = constants[ins[0]].astype(np.float32)
                continue
            self.ops.append((name, ins, outs, self._parse_options(name, op, path)))

        # Constants live as buffers (so .to(device) moves them), 4-D ones in NCHW like activations.
        self._constant_ids = sorted(i for i in constants if constants[i].dtype != np.float16)
        for i in self._constant_ids:
            value = torch.from_numpy(np.array(constants[i]))
            if value.is_floating_point():
                value = value.float()
            self.register_buffer(f"c{i}", _to_nchw(value).contiguous(), persistent=False)
        self._prepare_weights()
        for name, buf in list(self.named_buffers()):  # NHWC activations meet NHWC-strided weights: no re-layouts
            if buf.dim() == 4:
                setattr(self, name, buf.contiguous(memory_format=torch.channels_last))

    def _parse_options(self, name: str, op, path: Path) -> dict:
        if name == "CONV_2D":
            o = _options(op, tflite.Conv2DOptions)
            return dict(
                same=o.Padding() == 0,
                stride=(o.StrideH(), o.StrideW()),
                act=o.FusedActivationFunction(),
                dilation=(o.DilationHFactor(), o.DilationWFactor()),
            )
        if name == "DEPTHWISE_CONV_2D":
            o = _options(op, tflite.DepthwiseConv2DOptions)
            return dict(
                same=o.Padding() == 0,
                stride=(o.StrideH(), o.StrideW()),
                act=o.FusedActivationFunction(),
                dilation=(o.DilationHFactor(), o.DilationWFactor()),
                multiplier=o.DepthMultiplier(),
            )
        if name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            o = _options(op, tflite.Pool2DOptions)
            return dict(
                same=o.Padding() == 0,
                stride=(o.StrideH(), o.StrideW()),
                kernel=(o.FilterHeight(), o.FilterWidth()),
                act=o.FusedActivationFunction(),
            )
        if name in ("ADD", "MUL"):
            cls = tflite.AddOptions if name == "ADD" else tflite.MulOptions
            return dict(act=_options(op, cls).FusedActivationFunction())
        if name == "CONCATENATION":
            o = _options(op, tflite.ConcatenationOptions)
            return dict(axis=o.Axis(), act=o.FusedActivationFunction())
        if name == "RESIZE_BILINEAR":
            o = _options(op, tflite.ResizeBilinearOptions)
            if o.AlignCorners() == o.HalfPixelCenters():
                raise TFLiteGraphError(f"{path}: RESIZE_BILINEAR needs exactly one of align_corners/half_pixel")
            return dict(align_corners=bool(o.AlignCorners()))
        if name == "CUSTOM:Convolution2DTransposeBias":
            raw = op.CustomOptionsAsNumpy().astype(np.uint8).tobytes()
            padding, stride_w, stride_h = np.frombuffer(raw[:12], dtype=np.int32)
            return dict(same=int(padding) == 1, stride=(int(stride_h), int(stride_w)))
        if name in ("RELU", "PRELU", "PAD", "RESHAPE", "HARD_SWISH", "LOGISTIC", "DEQUANTIZE"):
            return {}
        raise TFLiteGraphError(f"{path}: operator {name} is not implemented by aenerf_ns.faces.tflite_graph")

    def _prepare_weights(self) -> None:
        """Re-layout convolution weights once: TFLite OHWI/1HWO become torch OIHW/O1HW (already NCHW-permuted)."""
        for name, ins, _, _ in self.ops:
            if name == "DEPTHWISE_CONV_2D":
                w = getattr(self, f"c{ins[1]}")  # (1, O, kh, kw) after the NCHW permute
                self.register_buffer(f"c{ins[1]}", w.transpose(0, 1).contiguous(), persistent=False)
            elif name == "CUSTOM:Convolution2DTransposeBias":
                w = getattr(self, f"c{ins[1]}")  # (O, I, kh, kw) -> torch's (I, O, kh, kw)
                self.register_buffer(f"c{ins[1]}", w.transpose(0, 1).contiguous(), persistent=False)
            elif name == "PRELU":
                a = getattr(self, f"c{ins[1]}")
                self.register_buffer(f"c{ins[1]}", a.reshape(1, -1, 1, 1).contiguous(), persistent=False)

    def _pad_same(
        self, x: torch.Tensor, kernel, stride, dilation=(1, 1), value: float = 0.0
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """SAME padding: symmetric padding is returned for the kernel to apply (no copy); the rest is padded here."""
        top, bottom = _same_padding(x.shape[2], kernel[0], stride[0], dilation[0])
        left, right = _same_padding(x.shape[3], kernel[1], stride[1], dilation[1])
        if top == bottom and left == right:
            return x, (top, left)
        return F.pad(x, (left, right, top, bottom), value=value), (0, 0)

    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        values: dict[int, torch.Tensor] = {i: getattr(self, f"c{i}") for i in self._constant_ids}
        for i, x in zip(self.inputs, inputs):
            values[i] = _to_nchw(x.float())
        batch = inputs[0].shape[0]
        for name, ins, outs, o in self.ops:
            x = values[ins[0]]
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                w, b = values[ins[1]], values[ins[2]] if len(ins) > 2 and ins[2] >= 0 else None
                pad = (0, 0)
                if o["same"]:
                    x, pad = self._pad_same(x, w.shape[2:], o["stride"], o["dilation"])
                groups = x.shape[1] if name == "DEPTHWISE_CONV_2D" else 1
                y = F.conv2d(x, w, b, stride=o["stride"], padding=pad, dilation=o["dilation"], groups=groups)
                y = _activation(y, o["act"])
            elif name == "CUSTOM:Convolution2DTransposeBias":
                w, b = values[ins[1]], values[ins[2]]
                y = F.conv_transpose2d(x, w, b, stride=o["stride"])
                out_h, out_w = self.shapes[outs[0]][1:3]
                y = y[:, :, :out_h, :out_w]
            elif name == "MAX_POOL_2D":
                pad = (0, 0)
                if o["same"]:
                    x, pad = self._pad_same(x, o["kernel"], o["stride"], value=float("-inf"))
                y = _activation(F.max_pool2d(x, o["kernel"], o["stride"], padding=pad), o["act"])
            elif name == "AVERAGE_POOL_2D":
                if o["same"]:
                    top, bottom = _same_padding(x.shape[2], o["kernel"][0], o["stride"][0])
                    left, right = _same_padding(x.shape[3], o["kernel"][1], o["stride"][1])
                    ones = F.pad(torch.ones_like(x[:, :1]), (left, right, top, bottom))
                    x = F.pad(x, (left, right, top, bottom))
                    y = F.avg_pool2d(x, o["kernel"], o["stride"]) / F.avg_pool2d(ones, o["kernel"], o["stride"])
                else:
                    y = F.avg_pool2d(x, o["kernel"], o["stride"])
                y = _activation(y, o["act"])
            elif name in ("ADD", "MUL"):
                other = values[ins[1]]
                y = _activation(x + other if name == "ADD" else x * other, o["act"])
            elif name == "RELU":
                y = F.relu(x)
            elif name == "PRELU":
                alpha = values[ins[1]]
                y = torch.where(x >= 0, x, x * alpha)
            elif name == "HARD_SWISH":
                y = F.hardswish(x)
            elif name == "LOGISTIC":
                y = torch.sigmoid(x)
            elif name == "PAD":
                pads = values[ins[1]].tolist()  # NHWC order: [[n0, n1], [h0, h1], [w0, w1], [c0, c1]]
                (h0, h1), (w0, w1), (c0, c1) = pads[1], pads[2], pads[3]
                y = F.pad(x, (w0, w1, h0, h1, c0, c1))
            elif name == "RESHAPE":
                shape = self.shapes[outs[0]]
                y = _to_nhwc(x).reshape([batch, *shape[1:]])
                y = _to_nchw(y)
            elif name == "CONCATENATION":
                parts = [values[i] for i in ins]
                axis = o["axis"] % parts[0].dim()
                if parts[0].dim() == 4:
                    axis = (0, 2, 3, 1)[axis]
                y = _activation(torch.cat(parts, dim=axis), o["act"])
            elif name == "RESIZE_BILINEAR":
                size = [int(v) for v in values[ins[1]].tolist()]
                y = F.interpolate(x, size=size, mode="bilinear", align_corners=o["align_corners"])
            else:  # pragma: no cover - rejected at load time
                raise TFLiteGraphError(f"operator {name} is not implemented")
            values[outs[0]] = y
        return [_to_nhwc(values[i]) for i in self.outputs]
