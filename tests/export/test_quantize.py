"""int8 export through each runtime's own quantizer, checked against float."""

import dataclasses
import os
import tempfile

import keras
import numpy as np
import pytest

import keras_practise
from keras_practise.export import exporter
from keras_practise.export import runtimes
from keras_practise.profiling import latency as latency_lib
from tests import tiny_models


@pytest.fixture(scope="module")
def model():
    # Module-scoped: built before the per-test seed is set, so seeded here;
    # otherwise its weights, and the int8 error bound below, would depend on
    # which tests ran before it in the worker.
    keras.utils.set_random_seed(0)
    model = tiny_models.tiny_resnet()
    tiny_models.randomize_batchnorm(model)
    return model


def _int8_weights(path, format):
    """Number of int8 weight tensors stored in the file."""
    if format == "onnx":
        import onnx

        graph = onnx.load(path).graph
        return sum(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    if format == "openvino":
        import openvino as ov

        return sum(
            op.get_type_name() == "Constant"
            and op.get_output_element_type(0) == ov.Type.i8
            for op in ov.Core().read_model(path).get_ops()
        )
    from ai_edge_litert import interpreter

    details = interpreter.Interpreter(model_path=path).get_tensor_details()
    return sum(d["dtype"] == np.int8 and "conv" in d["name"].lower() for d in details)


@pytest.mark.parametrize(
    "format,name", [("onnx", "m.onnx"), ("litert", "m.tflite"), ("openvino", "m.xml")]
)
def test_int8_export_in_each_runtime(model, format, name, tmp_path):
    path = os.path.join(tmp_path, name)
    calibration = tiny_models.images(16)
    result = keras_practise.export(
        model, path, format=format, quantize="int8", calibration=calibration
    )
    assert result.quantize == "int8" and result.path == path
    # A quarter of the calibration images is held out to check on.
    assert result.checked_on == 4 and result.min_agreement == 0.9
    assert result.agreement >= 0.9
    # Quantized, not float: int8 convolution weights, and outputs that
    # differ from the float model's by more than a float export's 1e-4 but
    # stay close to them.
    assert _int8_weights(path, format) >= 5
    assert 1e-4 < result.max_abs_diff < 0.5
    assert result.mean_abs_diff <= result.max_abs_diff
    other = tiny_models.images(16, seed=3)
    actual = runtimes.run_exported(path, format, other)
    expected = model.predict(other, verbose=0)
    assert np.mean(np.abs(actual - expected)) < 0.1
    assert np.mean(actual.argmax(-1) == expected.argmax(-1)) >= 0.75
    expected_files = {name, "m.bin"} if format == "openvino" else {name}
    assert set(os.listdir(tmp_path)) == expected_files


def test_low_agreement_is_refused_and_writes_nothing(model, tmp_path, monkeypatch):
    # The runtime's top class moved one place: no check input agrees.
    monkeypatch.setattr(
        runtimes, "run_exported",
        lambda path, format, x: np.roll(model.predict(x, verbose=0), 1, axis=-1),
    )
    with pytest.raises(ValueError, match="agreement 0.0% < min_agreement 90%"):
        keras_practise.export(
            model, os.path.join(tmp_path, "m.onnx"), quantize="int8",
            calibration=tiny_models.images(8),
        )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(quantize="int4", calibration=tiny_models.images(4)), "quantize"),
        (dict(format="saved_model", quantize="int8",
              calibration=tiny_models.images(4)), "no int8 quantizer"),
        (dict(quantize="int8"), "needs `calibration`"),
        (dict(calibration=tiny_models.images(4)), "only with `quantize`"),
        (dict(quantize="int8", calibration=tiny_models.images(4, size=8)),
         r"shape \(4, 8, 8, 3\)"),
        (dict(quantize="int8", calibration=tiny_models.images(1)), "at least 2"),
        (dict(quantize="int8", calibration=tiny_models.images(4),
              min_agreement=1.5), "min_agreement"),
    ],
)
def test_bad_int8_arguments_fail_before_writing(model, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_practise.export(model, os.path.join(tmp_path, "m.onnx"), **kwargs)
    assert os.listdir(tmp_path) == []


def test_missing_quantizer_names_the_extra(monkeypatch):
    missing = dataclasses.replace(
        runtimes.RUNTIMES["openvino"], quantizer_modules=("no_such_quantizer",)
    )
    monkeypatch.setitem(runtimes.RUNTIMES, "openvino", missing)
    assert exporter.resolve_target("m.xml") == ("m.xml", "openvino")
    with pytest.raises(ImportError, match=r"keras-practise\[openvino\]"):
        exporter.resolve_target("m.xml", quantize="int8")
    with pytest.raises(ValueError, match="no int8 quantizer"):
        exporter.resolve_target(("saved_model", "m"), quantize="int8")


def test_int8_and_float_files_timed_interleaved(model, tmp_path):
    float_file = keras_practise.export(model, os.path.join(tmp_path, "f.onnx"))
    int8_file = keras_practise.export(
        model, os.path.join(tmp_path, "q.onnx"), quantize="int8",
        calibration=tiny_models.images(8),
    )
    comparison = latency_lib.compare_exported_latency(
        {"float": float_file, "int8": ("onnx", int8_file.path)},
        input_shape=(16, 16, 3), runs=3, warmup=1, threads=1,
    )
    assert list(comparison.results) == ["float", "int8"]
    for result in comparison.results.values():
        assert result.runtime == "onnxruntime" and result.threads == 1
        assert result.input_shape == (16, 16, 3) and result.batch_size == 1
        assert len(result.times_ms) == 3 and 0 < result.median_ms < 1e3
    with pytest.raises(ValueError, match="Unknown export format"):
        latency_lib.compare_exported_latency(
            {"x": ("tensorrt", "m.plan")}, input_shape=(16, 16, 3)
        )


@pytest.mark.parametrize(
    "scheme, options",
    [("blocks", dict(blocks=["1.2"], finetune_steps=2)),
     ("filters", dict(keep=0.75, layers=["conv2_block1_1_conv"], steps=1))],
)
def test_compress_reports_int8_latency_against_float(scheme, options, tmp_path,
                                                     monkeypatch):
    # The report times the int8 file against a float export of the same
    # compressed model, interleaved in the int8 file's runtime; the float
    # file goes to a temporary folder that is removed.
    from keras_practise.demo import digits

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    teacher = keras.saving.load_model(digits.TEACHER_PATH)
    images, _ = digits.load_cluttered_digits("train", num_images=32, seed=0)
    out = tmp_path / "out"
    out.mkdir()
    path = os.path.join(out, "small.onnx")
    small, report = keras_practise.compress(
        teacher, images, scheme=scheme, augment_views=1, export=path,
        quantize="int8", latency_batch_size=2, verbose=0, return_report=True,
        min_agreement=0.0, **options,
    )
    # A trained network's int8 file passes the check on held-out views and
    # holds on images it never saw (the test split).
    exported = report.exported
    assert exported["quantize"] == "int8" and exported["path"] == path
    assert exported["agreement"] >= exported["min_agreement"] == 0.9
    assert _int8_weights(path, "onnx") > 0
    x, _ = digits.load_cluttered_digits("test", num_images=64, seed=1)
    int8 = runtimes.run_exported(path, "onnx", x).argmax(-1)
    assert np.mean(int8 == small.predict(x, verbose=0).argmax(-1)) >= 0.85
    timed = report.int8_latency
    assert timed["runtime"] == "onnxruntime"
    assert timed["batch_size"] == 2 and timed["runs"] == 30
    for name in ("float_ms", "int8_ms"):
        assert np.isfinite(timed[name]) and timed[name] > 0
    assert timed["ratio"] == pytest.approx(timed["int8_ms"] / timed["float_ms"])
    assert report.to_dict()["int8_latency"] == pytest.approx(timed)
    assert "int8 file in onnxruntime (batch 2" in report.table()
    assert "int8 latency" in report.phase_seconds
    # Only the int8 file is left: no float file beside it or in the scratch.
    assert sorted(os.listdir(out)) == ["small.onnx"]
    left = [
        os.path.join(root, name) for root, folders, names in os.walk(scratch)
        for name in folders + names
        if name.startswith("keras_practise_float_") or name.endswith(".onnx")
    ]
    assert left == []
    assert report.exported["quantize"] == "int8"
