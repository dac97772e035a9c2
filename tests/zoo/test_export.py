"""zoo.export: SavedModel and LiteRT artifacts of converted Caffe nets, checked against OpenCV's Caffe engine.

The artifacts are written with ``verify=False`` and run here by TensorFlow itself (``tf.saved_model.load``,
``tf.lite.Interpreter``), so the check does not go through the code under test. Every supported Caffe layer
type (the exactness tests' nets) goes through a SavedModel, PSPNet's topology through LiteRT.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from converters import caffe
from tests.caffe_files import caffemodel_bytes, random_blobs_for, write_net
from tests.converters import nets
from tests.converters.test_exactness import (CONV_POOL, ELEMENTWISE, NORM_SHAPE, RTOL, _bn_to_batchnorm_scale,
                                             _inputs, _output_layers)
from tests.oracle import opencv_forward
from zoo import WeightsRecord
from zoo.errors import one_line
from zoo.export import ExportError, export

# The output-comparison and --help tests are NumPy/argparse only (nothing a Keras backend computes) and run in
# ./dev test's TensorFlow pass alone; those that export or load a model are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic

BACKEND = keras.backend.backend()


def _serve(folder, model, feed):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(folder))
    args = keras.tree.map_structure(lambda t: feed[t.name], model.input)
    return [np.asarray(o) for o in tf.nest.flatten(loaded.serve(args))]


def _interpret(file, feed):
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(file))
    interpreter.allocate_tensors()
    (x,) = feed.values()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    details = sorted(interpreter.get_output_details(), key=lambda d: int(d["name"].rsplit(":", 1)[1]))
    return [interpreter.get_tensor(d["index"]) for d in details]


def _against_opencv(tmp_path, proto, rng, *, fmt="saved_model", opencv_proto=None, opencv_blobs=None, **kwargs):
    """Converts ``proto`` with random blobs, exports it without our check, runs the artifact with TensorFlow
    and compares every output with OpenCV's; returns the model."""
    blobs = random_blobs_for(proto, rng)
    net = caffe.load(*write_net(tmp_path, proto, blobs))
    model = caffe.to_keras(net, progress=False)
    feed = _inputs(net, rng)
    outs = _output_layers(net)
    cv_proto = opencv_proto or proto
    cv_blobs = opencv_blobs(blobs) if opencv_blobs else blobs
    ref = opencv_forward(cv_proto, feed, caffemodel_bytes(cv_proto, cv_blobs), list(outs.values()))
    target = tmp_path / ("net.tflite" if fmt == "litert" else "net_saved_model")
    export(model, target, format=fmt, verify=False, verbose=False, **kwargs)
    got = _interpret(target, feed) if fmt == "litert" else _serve(target, model, feed)
    assert len(got) == len(outs)
    for (top, layer), y in zip(outs.items(), got):
        r = ref[layer]
        assert y.shape == r.shape, f"{top}: shape {y.shape} vs OpenCV {r.shape}"
        err = np.abs(y - r).max()
        assert err <= RTOL * np.abs(r).max(), f"{top}: max abs error {err:.3g} vs max |OpenCV| {np.abs(r).max():.3g}"
    return model


def _refused_on_this_backend(fmt):
    """True (and the refusal checked) where Keras cannot write ``fmt``: PyTorch for both, JAX for LiteRT."""
    if BACKEND == "tensorflow" or (BACKEND == "jax" and fmt == "saved_model"):
        return False
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(1, 1)])
    with pytest.raises(ExportError, match=f"export needs the TensorFlow (or JAX )?backend; this is {BACKEND}"):
        export(model, "unused", format=fmt)
    return True


@agnostic
@pytest.mark.parametrize("proto", [CONV_POOL, ELEMENTWISE, NORM_SHAPE], ids=["conv_pool", "elementwise", "norm_shape"])
def test_saved_model_of_every_layer_type_matches_opencv(tmp_path, rng, proto):
    if not _refused_on_this_backend("saved_model"):
        # OpenCV reads PoolingParameter field 13 as `ceil_mode` (test_exactness): the same rounding in its words
        _against_opencv(tmp_path, proto, rng, opencv_proto=proto.replace("round_mode: FLOOR", "ceil_mode: false"))


@agnostic
def test_saved_model_keeps_free_sizes(tmp_path, rng):
    # FCN-8s' pad 100 / ceil pools / crops, converted for any size: the folder serves other sizes
    if _refused_on_this_backend("saved_model"):
        return
    kw = dict(widths=(3, 4, 4, 6, 6), fc=8, classes=3)
    proto = nets.fcn8s(27, 35, **kw)
    blobs = random_blobs_for(proto, rng)
    model = caffe.to_keras(caffe.load(*write_net(tmp_path, proto, blobs)), input_shape=(None, None), progress=False)
    if BACKEND == "jax":  # jax2tf's symbolic sizes cannot go through Caffe's ceil-mode pooling arithmetic
        with pytest.raises(ExportError, match=r"on JAX, free sizes go through jax2tf's shape polymorphism.* pass "
                                              r"input_shape=\(H, W\) \(kerazoo export --input-shape H W\), or export "
                                              r"under KERAS_BACKEND=tensorflow") as refused:
            export(model, tmp_path / "fcn", verbose=False)
        # the command line prints one_line's 600 characters: the hint came after Keras' long reason and was cut
        assert "--input-shape H W" in one_line(refused.value)
        assert not [p for p in os.listdir(tmp_path) if "fcn" in p]  # nor a temporary folder
        result = export(model, tmp_path / "fcn", input_shape=(31, 45), verbose=False)
        assert result.input_shapes == [[None, 31, 45, 3]]
        x = rng.normal(size=(2, 31, 45, 3)).astype(np.float32)
        (y,) = _serve(tmp_path / "fcn", model, {model.input.name: x})
        (ref,) = opencv_forward(nets.fcn8s(31, 45, **kw), {"data": x}, caffemodel_bytes(proto, blobs)).values()
        assert np.abs(y - ref).max() <= RTOL * np.abs(ref).max()
        return
    result = export(model, tmp_path / "fcn", verbose=False)
    assert result.input_shapes == [[None, None, None, 3]] and result.max_error <= RTOL * result.max_output
    for h, w in ((31, 45), (40, 29)):
        x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
        (y,) = _serve(tmp_path / "fcn", model, {model.input.name: x})
        (ref,) = opencv_forward(nets.fcn8s(h, w, **kw), {"data": x}, caffemodel_bytes(proto, blobs)).values()
        assert y.shape == ref.shape == (2, h, w, 3)
        assert np.abs(y - ref).max() <= RTOL * np.abs(ref).max()


@agnostic
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_litert_pspnet_topology_matches_opencv(tmp_path, rng):
    # Fork "BN" layers, dilations, pyramid AVE pools and Interp (einsum with fixed matrices) through TFLite
    if _refused_on_this_backend("litert"):
        return
    kw = dict(widths=(4, 4, 8, 8), blocks=(2, 1, 2, 1), stem=(4, 4, 6), ppm=4, head=6, classes=5)
    proto = nets.pspnet50(89, 91, 12, **kw)
    opencv_proto = nets.pspnet50(89, 91, 12, bn="BatchNorm", **kw)
    types = {l.name: l.type for l in caffe.load(write_net(tmp_path, proto, name="shape")[0]).layers}
    _against_opencv(tmp_path, proto, rng, fmt="litert", opencv_proto=opencv_proto,
                    opencv_blobs=lambda b: _bn_to_batchnorm_scale(b, types))


def _tiny(shape=(None, None, 3)):
    x = keras.Input(shape, name="image")
    return keras.Model(x, keras.layers.Conv2D(2, 3, padding="same", name="conv")(x), name="tiny")


@agnostic
def test_refusals_name_the_problem_and_write_nothing(tmp_path):
    if _refused_on_this_backend("saved_model"):
        return
    (tmp_path / "taken").mkdir()
    with pytest.raises(ExportError, match=r"'.*taken' exists; pass overwrite=True"):
        export(_tiny(), tmp_path / "taken", verbose=False)
    with pytest.raises(ExportError, match=r"input_shape=\(9, 9\) contradicts tiny's input 'image' of fixed size \(8, 8\)"):
        export(_tiny((8, 8, 3)), tmp_path / "a", input_shape=(9, 9), verbose=False)
    with pytest.raises(ExportError, match="format must be one of"):
        export(_tiny(), tmp_path / "a", format="onnx2", verbose=False)
    for batch in (0, 2.0, True, "2"):  # 2.0 went on to a Keras error, True was batch 1
        with pytest.raises(ExportError, match=f"batch_size must be a positive int or None. Received: {batch!r}"):
            export(_tiny(), tmp_path / "a", batch_size=batch, verbose=False)
    for size in ((6.5, 6), (0, 4), (4,), "44", (True, 4)):  # 6.5 was cut to 6 without a word
        with pytest.raises(ExportError, match=r"input_shape must be \(H, W\) of positive ints. Received: "):
            export(_tiny(), tmp_path / "a", input_shape=size, verbose=False)
    if BACKEND == "tensorflow":
        with pytest.raises(ExportError, match=r"LiteRT needs fixed input sizes .* 'image' \(None, None, 3\) leaves its "
                                              r"height and width open; pass input_shape=\(H, W\)"):
            export(_tiny(), tmp_path / "a.tflite", format="litert", verbose=False)
    assert sorted(os.listdir(tmp_path)) == ["taken"]


_TRACES = [0]


class _TraceCount(keras.layers.Layer):
    """Adds how often it was traced: a layer whose graph depends on Python state, so the exported graph (traced
    once) and ``predict``'s (traced later) compute different things."""

    def call(self, x):
        _TRACES[0] += 1
        return x + float(_TRACES[0])


@agnostic
def test_an_artifact_that_differs_is_refused_and_the_old_one_kept(tmp_path, rng):
    if _refused_on_this_backend("saved_model"):
        return
    x = keras.Input((6, 6, 1), name="image")
    good = keras.Model(x, keras.layers.Conv2D(1, 1, name="conv")(x), name="good")
    first = export(good, tmp_path / "out", verbose=False)
    assert first.max_error <= RTOL * first.max_output
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    noisy = keras.Model(x, _TraceCount(name="traced")(good.output), name="noisy")
    with pytest.raises(ExportError, match=r"the tf_saved_model artifact differs from noisy by up to .* nothing was written"):
        export(noisy, tmp_path / "out", overwrite=True, verbose=False)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # the first artifact, whole
    y = _serve(tmp_path / "out", good, {"image": rng.uniform(0, 255, (1, 6, 6, 1)).astype(np.float32)})
    assert len(y) == 1 and y[0].shape == (1, 6, 6, 1)


@agnostic
def test_record_goes_beside_the_artifact(tmp_path):
    if _refused_on_this_backend("saved_model"):
        return
    record = WeightsRecord(channel_order="BGR", mean=(104.0, 117.0, 123.0), class_names=("bg", "fg"), num_classes=2)
    result = export(_tiny(), tmp_path / "sm", record=record, input_shape=(5, 7), verbose=False)
    meta = json.loads((tmp_path / "sm" / "kerazoo.json").read_text())
    assert result.record_path == tmp_path / "sm" / "kerazoo.json"
    assert meta["inputs"] == {"image": {"shape": [None, 5, 7, 3], "dtype": "float32"}}
    assert meta["outputs"] == {"output_0": {"name": "conv", "shape": [None, 5, 7, 2], "dtype": "float32"}}
    assert meta["record"]["channel_order"] == "BGR" and meta["record"]["mean"] == [104.0, 117.0, 123.0]
    assert meta["record"]["class_names"] == ["bg", "fg"]


@agnostic
@pytest.mark.tf_pass_only
def test_command_line_exports_a_converted_keras_file(tmp_path, rng, capsys):
    if _refused_on_this_backend("saved_model"):
        return
    net = caffe.load(*write_net(tmp_path, NORM_SHAPE, random_blobs_for(NORM_SHAPE, rng)))
    model = caffe.to_keras(net, progress=False)
    model.save(tmp_path / "net.keras")
    env = {**os.environ, "KERAS_BACKEND": BACKEND}
    cmd = [sys.executable, "-m", "kerazoo", "export", str(tmp_path / "net.keras"), "-o", str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "checked: max |artifact - Keras| = " in done.stdout and f"wrote {tmp_path / 'out'}" in done.stdout
    feed = _inputs(net, rng)
    for y, ref in zip(_serve(tmp_path / "out", model, feed), keras.tree.flatten(model.predict(feed["data"], verbose=0))):
        assert np.abs(y - ref).max() <= RTOL * max(np.abs(ref).max(), 1e-6)
    from kerazoo.cli import main  # the refusal in-process: the run above is the command's own process

    capsys.readouterr()
    assert main(cmd[3:]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"kerazoo export: error: export: '{tmp_path / 'out'}' exists; pass overwrite=True (kerazoo export --overwrite) "
        f"to replace it")


@agnostic
def test_overwrite_replaces_only_an_earlier_export(tmp_path):
    # overwrite=True on a folder of other files (a home folder typed as OUT) moved it aside and deleted it
    if _refused_on_this_backend("saved_model"):
        return
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"\xff\xd8 not a model")
    with pytest.raises(ExportError, match=r"'.*photos' is a folder that is not a SavedModel \(no saved_model.pb\); "
                                          r"overwrite replaces only an earlier export"):
        export(_tiny(), tmp_path / "photos", overwrite=True, verbose=False)
    assert (tmp_path / "photos" / "a.jpg").read_bytes() == b"\xff\xd8 not a model"
    (tmp_path / "empty").mkdir()
    export(_tiny(), tmp_path / "empty", overwrite=True, verify=False, verbose=False)  # an empty folder is no loss
    assert (tmp_path / "empty" / "saved_model.pb").is_file()
    if BACKEND == "tensorflow":  # a .keras typed as the LiteRT OUT
        (tmp_path / "best.keras").write_bytes(b"PK\x03\x04 zip")
        with pytest.raises(ExportError, match=r"'.*best.keras' is a file that is not a LiteRT model \(no TFL3 "
                                              r"identifier\); overwrite replaces only an earlier export"):
            export(_tiny(), tmp_path / "best.keras", format="litert", input_shape=(4, 4), overwrite=True,
                   verbose=False)
        assert (tmp_path / "best.keras").read_bytes() == b"PK\x03\x04 zip"
    assert sorted(os.listdir(tmp_path)) == sorted(["photos", "empty"] + (["best.keras"] * (BACKEND == "tensorflow")))


@agnostic
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_litert_check_tells_inputs_of_one_shape_apart(tmp_path, rng):
    # the check fed same-shape inputs in the interpreter's (alphabetical) order, and refused a right artifact
    if _refused_on_this_backend("litert"):
        return
    first, second = keras.Input((4, 4, 1), name="b_first"), keras.Input((4, 4, 1), name="a_second")
    model = keras.Model([first, second], keras.layers.Concatenate()([first, second]), name="pair")
    result = export(model, tmp_path / "pair.tflite", format="litert", verbose=False)
    assert result.max_error == 0.0
    import tensorflow as tf

    runner = tf.lite.Interpreter(model_path=str(tmp_path / "pair.tflite")).get_signature_runner()
    a, b = rng.normal(size=(2, 1, 4, 4, 1)).astype(np.float32)
    (y,) = runner(b_first=a, a_second=b).values()
    np.testing.assert_array_equal(y, np.concatenate([a, b], axis=-1))  # the identity, written out


@agnostic
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_json_names_outputs_dtypes_and_replaces_a_stale_one(tmp_path):
    # the JSON was written only with a weights record (a re-export of other weights kept the old OUT.json),
    # gave no input dtype (a uint8 model's record scale/mean/std read as host preprocessing) and no outputs
    if _refused_on_this_backend("saved_model"):
        return
    from zoo.layers import Normalize

    image, center = keras.Input((8, 8, 3), name="image", dtype="uint8"), keras.Input((8, 8, 1), name="center_map")
    x = Normalize(scale=1 / 255.0, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), name="normalize")(image)
    first = keras.layers.Conv2D(2, 1, name="stage1")(keras.layers.Concatenate()([x, center]))
    pooled = keras.layers.MaxPooling2D(2, name="stage2")(first)
    model = keras.Model([image, center], [first, pooled], name="two")
    fmt, out = ("litert", tmp_path / "two.tflite") if BACKEND == "tensorflow" else ("saved_model", tmp_path / "two")
    record = WeightsRecord(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), scale=1 / 255.0)
    export(model, out, format=fmt, record=record, verbose=False)
    result = export(model, out, format=fmt, overwrite=True, verbose=False)  # random weights: no record now
    assert result.record_path == (tmp_path / "two.tflite.json" if fmt == "litert" else out / "kerazoo.json")
    meta = json.loads(result.record_path.read_text())
    batch = 1 if fmt == "litert" else None
    assert meta["inputs"] == {"image": {"shape": [batch, 8, 8, 3], "dtype": "uint8"},
                              "center_map": {"shape": [batch, 8, 8, 1], "dtype": "float32"}}
    assert meta["outputs"] == {"output_0": {"name": "stage1", "shape": [batch, 8, 8, 2], "dtype": "float32"},
                               "output_1": {"name": "stage2", "shape": [batch, 4, 4, 2], "dtype": "float32"}}
    assert meta["preprocessing"].startswith("none: 'image' takes RGB pixels 0-255 as uint8")
    assert meta["center_map_sigma"] == 21.0 and meta["record"] is None


@agnostic
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16", "bfloat16", "float16"])
def test_litert_of_a_16_bit_model_is_float32(tmp_path, rng, policy):
    # a bf16/fp16 model's .tflite held TensorFlow ops (FlexPad, FlexConv2D) LiteRT cannot run: the check died in
    # a RuntimeError about the Flex delegate, and with verify=False the file was written anyway; a pure policy
    # (16-bit weights too) still was, after mixed ones were converted
    if _refused_on_this_backend("litert"):
        return
    x = keras.Input((6, 6, 3), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv", dtype=policy)(x)
    model = keras.Model(x, keras.layers.Activation("linear", dtype="float32", name="out")(h), name="mixed")
    model.get_layer("conv").set_weights([rng.normal(size=(3, 3, 3, 4)), rng.normal(size=4)])
    # as stored: a pure policy keeps them in 16 bits, which the float32 copy takes over exactly
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_layer("conv").get_weights())
    result = export(model, tmp_path / "m.tflite", format="litert", verbose=False)
    assert result.max_error <= RTOL * result.max_output
    import tensorflow as tf

    runner = tf.lite.Interpreter(model_path=str(tmp_path / "m.tflite")).get_signature_runner()
    pixels = rng.integers(0, 256, (1, 6, 6, 3)).astype(np.float32)
    (y,) = runner(image=pixels).values()
    padded = np.pad(pixels.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))  # 'same' 3x3, written out
    ref = sum(padded[:, i:i + 6, j:j + 6] @ kernel[i, j] for i in range(3) for j in range(3)) + bias
    assert y.dtype == np.float32 and np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()  # float32, not bf16's 4e-3
    assert model.get_layer("conv").dtype_policy.name == policy  # the caller's model is left as it was


@agnostic
def test_a_symbolic_link_out_is_replaced_not_followed(tmp_path):
    # a dangling link as OUT passed the exists() check, and after the whole export the rename failed with
    # NotADirectoryError; a link to an earlier export is replaced by the new one, its target left as it was
    if _refused_on_this_backend("saved_model"):
        return
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ExportError, match=r"'.*link' \(a symbolic link to '.*nowhere'\) exists; pass overwrite=True"):
        export(_tiny(), tmp_path / "link", verbose=False)
    export(_tiny(), tmp_path / "link", overwrite=True, verify=False, verbose=False)
    assert not (tmp_path / "link").is_symlink() and (tmp_path / "link" / "saved_model.pb").is_file()
    export(_tiny(), tmp_path / "v1", verify=False, verbose=False)
    (tmp_path / "latest").symlink_to("v1")
    export(_tiny(), tmp_path / "latest", overwrite=True, verify=False, verbose=False)
    assert not (tmp_path / "latest").is_symlink() and (tmp_path / "latest" / "saved_model.pb").is_file()
    assert (tmp_path / "v1" / "saved_model.pb").is_file()  # the link's target, kept
    assert sorted(os.listdir(tmp_path)) == ["latest", "link", "v1"]


def test_command_line_help_says_what_the_options_do():
    # --no-verify's help ended "(default: True)" (the default of its dest, verify), read as verification off
    from kerazoo.cli import build_parser

    parser = build_parser()
    export_parser = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "export")[1]
    text = " ".join(export_parser.format_help().split())
    assert "(default: True)" not in text
    assert "--no-verify skip loading the artifact back and comparing outputs (checked by default)" in text
    assert "--format {saved_model,litert} saved_model (a folder) or litert (one .tflite file, fixed sizes)" in text


class _TraceStep(keras.layers.Layer):
    """``x * 0 + 0.5 + step * (times traced)``: small values (0.5) that differ between the exported graph and
    ``predict``'s by a multiple of ``step``, as :class:`_TraceCount`."""

    def __init__(self, step, **kwargs):
        super().__init__(**kwargs)
        self.step = step

    def call(self, x):
        _TRACES[0] += 1
        return x * 0.0 + (0.5 + self.step * _TRACES[0])


@agnostic
def test_each_output_is_checked_against_its_own_scale(tmp_path):
    # the error was read against the largest value of all outputs: a 0.5-sized output off by >= 1e-3 (2e-3 of
    # itself) passed beside one in the tens of thousands
    if _refused_on_this_backend("saved_model"):
        return
    x = keras.Input((4, 4, 1), name="image")
    big = keras.layers.Conv2D(1, 1, kernel_initializer=keras.initializers.Constant(100.0), name="big")(x)
    model = keras.Model(x, [big, _TraceStep(1e-3, name="small")(x)], name="scales")
    with pytest.raises(ExportError, match=r"differs from scales by up to .* in output 1 \('small', largest \|value\| "
                                          r"0.5.*nothing was written"):
        export(model, tmp_path / "out", verbose=False)
    assert os.listdir(tmp_path) == []


def test_a_nan_on_one_side_is_an_infinite_error():
    from zoo.export import _compare

    ours = [np.array([1.0, 2.0, np.nan]), np.array([[4.0, -8.0]])]
    theirs = [np.array([1.0, np.nan, np.nan]), np.array([[4.0, np.inf]])]  # NaN in both at [2]: the same
    assert _compare(ours, theirs, "m") == [(np.inf, 2.0), (np.inf, 8.0)]  # max(0.0, nan) was 0.0: passed
    assert _compare([np.array([1.0, -3.0])], [np.array([1.5, -3.0])], "m") == [(0.5, 3.0)]


@agnostic
def test_a_refused_export_leaves_no_folders_it_made(tmp_path):
    # OUT's missing parent folders were made first and stayed, empty, after a refusal or a failed check
    if _refused_on_this_backend("saved_model"):
        return
    x = keras.Input((6, 6, 1), name="image")
    noisy = keras.Model(x, _TraceCount(name="traced")(x), name="noisy")
    with pytest.raises(ExportError, match="nothing was written"):
        export(noisy, tmp_path / "new" / "deeper" / "out", verbose=False)
    (tmp_path / "kept").mkdir()
    with pytest.raises(ExportError, match="input_shape=.* contradicts"):
        export(_tiny((8, 8, 3)), tmp_path / "kept" / "a" / "out", input_shape=(9, 9), verbose=False)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["kept"]
    export(_tiny(), tmp_path / "new" / "out", verify=False, verbose=False)  # made, and kept, when it works
    assert (tmp_path / "new" / "out" / "saved_model.pb").is_file()


@agnostic
def test_a_bfloat16_model_is_checked_at_its_own_precision(tmp_path, rng):
    # a mixed_bfloat16 model (training --precision bf16) was held to 1e-4: XLA (JAX's predict) and TensorFlow
    # (the SavedModel) sum a bfloat16 mean in other orders, 1e-3 apart here (PSPNet's pyramid pooling: 1%), so
    # such a model could not be exported on JAX
    if _refused_on_this_backend("saved_model"):
        return
    keras.utils.set_random_seed(0)  # Glorot weights whose rounding falls apart by 1.1e-3 of the output
    x = keras.Input((32, 32, 3), name="image")
    conv = keras.layers.Conv2D(8, 3, padding="same", dtype="mixed_bfloat16", name="conv")
    pooled = keras.layers.GlobalAveragePooling2D(dtype="mixed_bfloat16", name="pool")(conv(x))
    model = keras.Model(x, keras.layers.Activation("linear", dtype="float32", name="out")(pooled), name="bf16")
    kernel, bias = conv.get_weights()
    result = export(model, tmp_path / "sm", verbose=False)
    assert result.max_error <= 0.125 * result.max_output
    pixels = rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    (y,) = _serve(tmp_path / "sm", model, {"image": pixels})
    padded = np.pad(pixels.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))  # 'same' 3x3, then the mean
    ref = sum(padded[:, i:i + 32, j:j + 32] @ kernel[i, j] for i in range(3) for j in range(3)).mean(axis=(1, 2)) + bias
    assert np.abs(y - ref).max() <= 0.03 * np.abs(ref).max()  # bfloat16's rounding, not a wrong graph


@agnostic
def test_a_jax_saved_model_runs_on_cpu_and_cuda(tmp_path):
    # jax2tf lowered for the exporting machine's platform only: a SavedModel written on a CPU declared
    # platforms [CPU], and its XlaCallModule refuses to run on a GPU server
    if _refused_on_this_backend("saved_model"):
        return
    from tensorflow.core.protobuf import saved_model_pb2

    export(_tiny(), tmp_path / "sm", input_shape=(8, 8), verbose=False)
    proto = saved_model_pb2.SavedModel.FromString((tmp_path / "sm" / "saved_model.pb").read_bytes())
    platforms = {tuple(node.attr["platforms"].list.s) for f in proto.meta_graphs[0].graph_def.library.function
                 for node in f.node_def if node.op == "XlaCallModule"}
    assert platforms == ({(b"CPU", b"CUDA")} if BACKEND == "jax" else set())  # TensorFlow: plain TF ops


@agnostic
def test_an_output_of_zeros_is_checked_with_the_zero_weights_varied(tmp_path, rng):
    # a fresh FCN's score layers start at zero (voc-fcn*/net.py), so its output is 0 on any input: the check
    # compared 0 with 0 and said "checked" of a graph it never saw work; a wrong one passed too
    if _refused_on_this_backend("saved_model"):
        return
    x = keras.Input((6, 6, 3), name="image")
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")
    score = keras.layers.Conv2D(2, 1, kernel_initializer="zeros", name="score")
    wrong = keras.Model(x, score(_TraceCount(name="traced")(conv(x))), name="wrong")
    with pytest.raises(ExportError, match=r"differs from wrong \(a copy with its all-zero weights .*score/kernel.* "
                                          r"seeded random\) by up to .* nothing was written"):
        export(wrong, tmp_path / "wrong", verbose=False)
    assert os.listdir(tmp_path) == []

    fcn = keras.Model(x, score(conv(x)), name="fcn")
    result = export(fcn, tmp_path / "fcn", verbose=False)
    meta = json.loads((tmp_path / "fcn" / "kerazoo.json").read_text())
    assert result.verified and meta["verified"] is True
    assert meta["verification"].startswith("output 0 ('score') had no finite non-zero value on the check input "
                                           "(all-zero weights conv/bias, score/kernel, score/bias): checked on a copy")
    pixels = rng.uniform(0, 255, (2, 6, 6, 3)).astype(np.float32)
    (y,) = _serve(tmp_path / "fcn", fcn, {"image": pixels})
    np.testing.assert_array_equal(y, np.zeros((2, 6, 6, 2)))  # the real (zero) weights were written, not the copy's
    assert not score.get_weights()[0].any()  # and the caller's model left as it was

    # nothing to vary: 'verified' false with the reason, never "checked"
    dead = keras.Model(x, keras.layers.ReLU(name="relu")(keras.layers.Conv2D(
        1, 1, use_bias=False, kernel_initializer=keras.initializers.Constant(-1.0), name="neg")(x)), name="dead")
    result = export(dead, tmp_path / "dead", verbose=False)
    meta = json.loads((tmp_path / "dead" / "kerazoo.json").read_text())
    assert result.verified is False and meta["verified"] is False
    assert meta["verification"] == ("output 0 ('relu') had no finite non-zero value on the check input, and dead has "
                                    "no all-zero weights to vary: the check compared nothing there")
    (y,) = _serve(tmp_path / "dead", dead, {"image": pixels - 128})
    np.testing.assert_allclose(y, np.maximum(-(pixels - 128).sum(-1, keepdims=True), 0), rtol=1e-5)  # relu(-sum)
    unchecked = export(_tiny(), tmp_path / "unchecked", verify=False, verbose=False)
    assert unchecked.verified is False and json.loads(unchecked.record_path.read_text())["verification"] == \
        "not checked (verify=False, kerazoo export --no-verify)"


@agnostic
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_a_batch_the_model_fixes_is_the_artifacts(tmp_path, rng):
    # keras.Input(batch_size=2) was exported with a free batch (LiteRT: batch 1), and the JSON said so
    if _refused_on_this_backend("saved_model"):
        return
    import tensorflow as tf

    x = keras.Input((5, 5, 3), batch_size=2, name="image")
    model = keras.Model(x, keras.layers.Conv2D(1, 1, name="conv")(x), name="pair")
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_layer("conv").get_weights())
    pixels = rng.uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    ref = pixels.astype(np.float64) @ kernel[0, 0] + bias  # a 1x1 convolution, written out
    result = export(model, tmp_path / "sm", verbose=False)
    assert result.input_shapes == [[2, 5, 5, 3]]
    meta = json.loads((tmp_path / "sm" / "kerazoo.json").read_text())
    assert meta["inputs"]["image"]["shape"] == [2, 5, 5, 3] and meta["outputs"]["output_0"]["shape"] == [2, 5, 5, 1]
    assert meta["batch"] == {"size": 2, "from": "the model's inputs"}
    (spec,) = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"].structured_input_signature[1].values()
    assert spec.shape.as_list() == [2, 5, 5, 3]
    (y,) = _serve(tmp_path / "sm", model, {"image": pixels})
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()
    with pytest.raises(ExportError, match=r"batch_size=3 contradicts pair's inputs, which fix batch 2; leave "
                                          r"batch_size out \(kerazoo export without --batch-size\)"):
        export(model, tmp_path / "three", batch_size=3, verbose=False)
    assert export(_tiny(), tmp_path / "free", input_shape=(4, 4), verbose=False).input_shapes == [[None, 4, 4, 3]]
    assert json.loads((tmp_path / "free" / "kerazoo.json").read_text())["batch"] == {"size": None,
                                                                                   "from": "free: any batch"}
    if BACKEND == "tensorflow":  # LiteRT's default batch 1 yields to the model's
        export(model, tmp_path / "m.tflite", format="litert", verbose=False)
        runner = tf.lite.Interpreter(model_path=str(tmp_path / "m.tflite")).get_signature_runner()
        assert list(runner.get_input_details()["image"]["shape"]) == [2, 5, 5, 3]
        (y,) = runner(image=pixels).values()
        assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()
    assert sorted(os.listdir(tmp_path)) == sorted(["free", "sm"] + ["m.tflite", "m.tflite.json"] * (BACKEND == "tensorflow"))


@agnostic
def test_a_litert_records_place_holding_another_file_is_refused(tmp_path):
    # export(..., format="litert") replaced a user's OUT.json (notes beside their model) with its record, without
    # overwrite=True and without a word; overwrite replaces only an earlier export's
    from zoo.export import check_target

    notes = tmp_path / "m.tflite.json"
    notes.write_text('{"mine": "notes"}')
    for overwrite in (False, True):
        with pytest.raises(ExportError, match=r"'.*m.tflite.json' exists and is not an earlier LiteRT export's "
                                              r"record, which is written there; overwrite replaces only an earlier "
                                              r"export"):
            check_target(tmp_path / "m.tflite", "litert", overwrite)
    assert notes.read_text() == '{"mine": "notes"}'
    for earlier in (json.dumps({"format": "litert", "model": "m"}), ""):  # an earlier export's (its .tflite gone)
        notes.write_text(earlier)
        check_target(tmp_path / "m.tflite", "litert")
    check_target(tmp_path / "m", "saved_model")  # a SavedModel's record goes inside its folder
