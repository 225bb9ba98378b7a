"""A tiny ONNX stand-in for the LaMa export (tests/models/test_lama.py, tests/integration/test_lama_server.py): the
same input and output names and shapes as Carve/LaMa-ONNX (image 1x3x512x512 in 0..1, mask 1x1x512x512 with 1 = hole,
output 1x3x512x512 in 0..255), or another export's settings. It "inpaints" each hole pixel with FILL."""

from pathlib import Path

import numpy as np

FILL = np.array([0.2, 0.6, 0.9], np.float32)  # what the tiny model paints into the hole


def tiny_lama(path: Path, size: int = 512, names=("image", "mask", "output"), hole_value: float = 1.0,
              in_range=(0.0, 1.0), out_range=(0.0, 255.0)) -> Path:
    """An ONNX graph: out = keep * image + hole * FILL, in the export's own ranges and mask polarity."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    image, mask, output = names
    lo, hi = in_range
    olo, ohi = out_range
    consts = {
        "in_lo": np.float32(lo), "in_scale": np.float32(1.0 / (hi - lo)), "hole_value": np.float32(hole_value),
        "one": np.float32(1.0), "fill": FILL.reshape(1, 3, 1, 1), "out_lo": np.float32(olo),
        "out_scale": np.float32(ohi - olo)}
    nodes = [
        helper.make_node("Sub", [image, "in_lo"], ["x0"]), helper.make_node("Mul", ["x0", "in_scale"], ["x"]),
        # hole = 1 where mask == hole_value: |mask - (1 - hole_value)|
        helper.make_node("Sub", ["one", "hole_value"], ["keep_value"]),
        helper.make_node("Sub", [mask, "keep_value"], ["m0"]), helper.make_node("Abs", ["m0"], ["hole"]),
        helper.make_node("Sub", ["one", "hole"], ["keep"]),
        helper.make_node("Mul", ["x", "keep"], ["kept"]), helper.make_node("Mul", ["fill", "hole"], ["painted"]),
        helper.make_node("Add", ["kept", "painted"], ["y"]),
        helper.make_node("Mul", ["y", "out_scale"], ["y1"]), helper.make_node("Add", ["y1", "out_lo"], [output]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_lama",
        [helper.make_tensor_value_info(image, TensorProto.FLOAT, [1, 3, size, size]),
         helper.make_tensor_value_info(mask, TensorProto.FLOAT, [1, 1, size, size])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, 3, size, size])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
