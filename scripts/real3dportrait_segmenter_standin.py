"""A stand-in for MediaPipe's ``selfie_multiclass_256x256.tflite`` (Real3D-Portrait's segmenter), for tests.

The real model (git blob ``584ed7ab…`` in upstream's tree, sha256 ``c6748b12…e0e0``, 16,371,837 bytes; pinned in
kdbench's weights manifest as ``real3dportrait_selfie_segmenter``) cannot be fetched here. This writes a TFLite model
with the same interface, built with the TFLite and metadata schemas that ship in the mediapipe wheel (no
TensorFlow): input ``float32[1,256,256,3]`` (normalised with mean 127.5, std 127.5),
output ``float32[1,256,256,6]`` softmax scores of the six classes upstream reads (background, hair, body-skin,
face-skin, clothes, others). The graph is ``SOFTMAX(CONV_2D_1x1(image) + layout)``: a fixed portrait layout
(face-skin ellipse in the centre, hair above, body-skin neck, clothes at the bottom, background around) plus a
small random colour term, so that the category mask is spatially coherent (upstream's background extraction
needs background pixels far from the person) and still depends on the image. MediaPipe's ``ImageSegmenter``
loads it as it loads the real one.

    $KDBENCH_HOME/methods/real3dportrait/venv/bin/python scripts/real3dportrait_segmenter_standin.py OUT.tflite
"""

from __future__ import annotations

import argparse
from pathlib import Path

SIZE = 256
LABELS = ("background", "hair", "body-skin", "face-skin", "clothes", "others")


def layout_logits(size: int = SIZE):
    """``float32[1,size,size,6]``: a portrait layout as logits (4 for the region's class, 0 elsewhere)."""
    import numpy as np

    y, x = np.mgrid[0:size, 0:size] / (size - 1)  # 0..1, y down
    cls = np.zeros((size, size), np.int64)
    face = ((x - 0.5) / 0.2) ** 2 + ((y - 0.45) / 0.27) ** 2 <= 1
    hair = (((x - 0.5) / 0.25) ** 2 + ((y - 0.38) / 0.3) ** 2 <= 1) & ~face & (y < 0.5)
    neck = (np.abs(x - 0.5) < 0.1) & (y > 0.6) & (y < 0.85) & ~face
    clothes = (y >= 0.85) & (np.abs(x - 0.5) < 0.4)
    cls[hair], cls[face], cls[neck], cls[clothes] = 1, 3, 2, 4
    cls[(np.abs(x - 0.62) < 0.03) & (np.abs(y - 0.62) < 0.02)] = 5  # an "accessory" patch
    logits = np.zeros((1, size, size, len(LABELS)), np.float32)
    np.put_along_axis(logits[0], cls[..., None], 4.0, axis=-1)
    return logits


def _metadata() -> bytes:
    """MediaPipe/TFLite model metadata (``M001``): RGB image input normalised with mean 127.5, std 127.5 (required
    for a float32 input), a segmentation-mask output. Written with the schema classes directly: the wheel's
    ``metadata_writers`` need a native module (``mediapipe.tasks.cc.metadata``) the 0.10.31 wheel lacks."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as md

    def image(color_space):
        content = md.ContentT()
        content.contentPropertiesType = md.ContentProperties.ImageProperties
        content.contentProperties = md.ImagePropertiesT()
        content.contentProperties.colorSpace = color_space
        return content

    norm = md.NormalizationOptionsT()
    norm.mean, norm.std = [127.5], [127.5]
    unit = md.ProcessUnitT()
    unit.optionsType, unit.options = md.ProcessUnitOptions.NormalizationOptions, norm
    stats = md.StatsT()
    stats.max, stats.min = [1.0], [-1.0]
    inp = md.TensorMetadataT()
    inp.name, inp.description, inp.content = "image", "Input image to be segmented.", image(md.ColorSpaceType.RGB)
    inp.processUnits, inp.stats = [unit], stats
    out = md.TensorMetadataT()
    out.name, out.content = "segmentation_masks", image(md.ColorSpaceType.GRAYSCALE)
    out.description = "Scores of " + ", ".join(LABELS) + " per pixel."
    graph = md.SubGraphMetadataT()
    graph.inputTensorMetadata, graph.outputTensorMetadata = [inp], [out]
    model = md.ModelMetadataT()
    model.name, model.description, model.version = "ImageSegmenter", "kdbench stand-in (random weights)", "1"
    model.subgraphMetadata, model.minParserVersion = [graph], "1.0.0"
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), b"M001")
    return bytes(b.Output())


def tflite_model(seed: int = 0) -> bytes:
    """The TFLite flatbuffer of ``SOFTMAX(CONV_2D(x, w, b) + layout)`` with :func:`_metadata` attached."""
    import flatbuffers
    import numpy as np
    from mediapipe.tasks.metadata import schema_py_generated as fb

    rng = np.random.default_rng(seed)
    weights = (rng.standard_normal((len(LABELS), 1, 1, 3)) * 0.8).astype(np.float32)  # OHWI
    bias = (rng.standard_normal(len(LABELS)) * 0.1).astype(np.float32)
    consts = [weights, bias, layout_logits(), np.frombuffer(_metadata(), np.uint8)]

    def buffer(data=None):
        b = fb.BufferT()
        b.data = None if data is None else np.frombuffer(data.tobytes(), np.uint8)
        return b

    def tensor(name, shape, buf):
        t = fb.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), list(shape), fb.TensorType.FLOAT32, buf
        return t

    def opcode(code):
        c = fb.OperatorCodeT()
        c.builtinCode = c.deprecatedBuiltinCode = code
        c.version = 1
        return c

    def op(index, inputs, outputs, options_type, options):
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = index, list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = options_type, options
        return o

    shape_in, shape_out = (1, SIZE, SIZE, 3), (1, SIZE, SIZE, len(LABELS))
    tensors = [tensor("input_29", shape_in, 0), tensor("conv_w", weights.shape, 1), tensor("conv_b", bias.shape, 2),
               tensor("conv_out", shape_out, 0), tensor("layout", shape_out, 3), tensor("logits", shape_out, 0),
               tensor("output_0", shape_out, 0)]
    conv = fb.Conv2DOptionsT()
    conv.padding, conv.strideW, conv.strideH = fb.Padding.SAME, 1, 1
    softmax = fb.SoftmaxOptionsT()
    softmax.beta = 1.0
    graph = fb.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.name = tensors, [0], [6], b"main"
    graph.operators = [op(0, (0, 1, 2), (3,), fb.BuiltinOptions.Conv2DOptions, conv),
                       op(1, (3, 4), (5,), fb.BuiltinOptions.AddOptions, fb.AddOptionsT()),
                       op(2, (5,), (6,), fb.BuiltinOptions.SoftmaxOptions, softmax)]
    meta = fb.MetadataT()
    meta.name, meta.buffer = b"TFLITE_METADATA", 4
    model = fb.ModelT()
    model.version, model.description = 3, b"kdbench stand-in for selfie_multiclass_256x256 (random weights)"
    model.operatorCodes = [opcode(fb.BuiltinOperator.CONV_2D), opcode(fb.BuiltinOperator.ADD),
                           opcode(fb.BuiltinOperator.SOFTMAX)]
    model.subgraphs, model.metadata = [graph], [meta]
    model.buffers = [buffer()] + [buffer(c) for c in consts]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def write_standin(path: Path, seed: int = 0) -> Path:
    """Write the stand-in model to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tflite_model(seed))
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="the .tflite file to write")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(write_standin(a.out, a.seed))


if __name__ == "__main__":
    main()
