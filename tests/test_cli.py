"""Tests of the `keras-practise` command line, run in-process through `main`."""

import json
import os
import pathlib

import keras
import numpy as np
import pytest

import keras_practise
from keras_practise import cli
from keras_practise.cli import commands
from keras_practise.cli import parser

TINY = ["--steps", "2", "--finetune-steps", "2", "--num-samples", "6",
        "--latency", "macs", "--latency-batch-size", "0", "--batch-size", "6"]


def _residual_block(x, name):
    y = keras.layers.Conv2D(4, 3, padding="same", name=f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(4, 3, padding="same", name=f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved 3-block residual net (blocks 1.2 and 1.3 droppable), a copy
    without block 1.2, an .npz tiny set and a class-folder tiny set."""
    folder = tmp_path_factory.mktemp("cli")
    # Module-scoped: seeded here, not by the per-test fixture, so the
    # weights do not depend on which tests ran before in the worker.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem_conv")(inputs)
    for index in (1, 2, 3):
        x = _residual_block(x, f"block{index}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="tiny_resnet")
    paths = {
        "model": folder / "model.keras",
        "dropped": folder / "dropped.keras",
        "npz": folder / "tiny.npz",
        "images": folder / "images",
    }
    model.save(paths["model"])
    keras_practise.drop_blocks(model, ["1.2"]).save(paths["dropped"])
    rng = np.random.default_rng(0)
    images = rng.random((9, 8, 8, 3)).astype("float32")
    np.savez(paths["npz"], images=images, labels=np.arange(9) % 3)
    for label in range(3):
        (paths["images"] / f"class{label}").mkdir(parents=True)
        for index in range(2):
            pixels = rng.integers(0, 256, (10, 10, 3)).astype("uint8")
            keras.utils.save_img(
                paths["images"] / f"class{label}" / f"{index}.png", pixels
            )
    return {name: str(path) for name, path in paths.items()}


def _only_files(folder):
    return sorted(os.listdir(folder))


def test_compress_selects_blocks_saves_model_and_report(files, tmp_path, capsys):
    out, report = tmp_path / "small.keras", tmp_path / "report.json"
    code = cli.main(
        ["compress", files["model"], "--data", files["npz"], "--drop", "1",
         "--out", str(out), "--report", str(report), *TINY]
    )
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    # Progress went to stderr; stdout holds the results only, starting with
    # the report table.
    assert stdout.startswith("Recoverability of the candidates:")
    assert "Recoverability of the candidates:" not in stderr
    assert "block" in stderr
    assert f"Saved the compressed model to {out}" in stdout
    assert _only_files(tmp_path) == ["report.json", "small.keras"]

    small = keras.saving.load_model(out)
    original = keras.saving.load_model(files["model"])
    assert keras_practise.count_params(small) < keras_practise.count_params(original)
    with open(report) as file:
        saved = json.load(file)
    assert len(saved["blocks"]) == 1
    assert saved["blocks"][0] in ("block2", "block3")
    assert saved["tiny_set"]["size"] == 6
    assert saved["params"][1] == keras_practise.count_params(small)


def test_compress_given_blocks_from_image_folder(files, tmp_path, capsys):
    out = tmp_path / "small.keras"
    code = cli.main(
        ["compress", files["model"], "--data", files["images"],
         "--blocks", "1.3", "--preprocess", "rescale", "--out", str(out),
         "--backend", keras.backend.backend(), "-q", *TINY]
    )
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert stderr == ""
    assert "Dropped 1 blocks: block3 (1.3)" in stdout
    small = keras.saving.load_model(out)
    assert "block3_add" not in [layer.name for layer in small.layers]
    assert small.predict(np.zeros((2, 8, 8, 3)), verbose=0).shape == (2, 3)


def test_blocks_prints_candidate_table(files, capsys):
    assert cli.main(["blocks", files["model"]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["block", "stage.pos", "kind", "layers", "params"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["block2", "1.2", "residual"], ["block3", "1.3", "residual"]
    ]


def test_latency_compares_two_models(files, capsys):
    code = cli.main(
        ["latency", files["model"], files["dropped"], "--batch-size", "2",
         "--runs", "3", "--warmup", "1", "-q"]
    )
    stdout, _ = capsys.readouterr()
    assert code == 0
    assert f"backend={keras.backend.backend()}" in stdout
    assert "runs=3" in stdout
    rows = [line.split() for line in stdout.splitlines()[2:]]
    assert [row[0] for row in rows] == [files["model"], files["dropped"]]
    assert rows[0][3] == "1.000"  # The first model is the reference.


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["compress", "{missing}", "--out", "{out}"], 1, "Model file not found"),
        (["compress", "{model}", "--data", "{npz}", "--blocks", "1.1",
          "--out", "{out}"], 1, "Unknown or non-droppable block '1.1'"),
        (["compress", "{model}", "--data", "{npz}", "--drop", "5",
          "--out", "{out}"], 1, "drop"),
        (["compress", "{model}", "--drop", "0", "--out", "{out}"], 2,
         "`drop` must be a positive integer. Received: drop=0"),
        (["compress", "{model}", "--drop", "two", "--out", "{out}"], 2,
         "argument --drop: invalid int value: 'two'"),
        (["compress", "{model}", "--out", "{model}"], 2,
         "--out must differ from the model"),
        (["compress", "{model}", "--out", "{tmp}/nowhere/small.keras"], 1,
         "folder of --out does not exist"),
        (["compress", "{model}", "--out", "{tmp}/small.h5"], 2,
         "--out must be a .keras file"),
        (["compress", "{model}", "--data", "{bad_npz}", "--out", "{out}"], 1,
         "must hold the images under 'images' or 'x'"),
        (["compress", "{model}", "--image-size", "8by8", "--out", "{out}"], 2,
         "expected H W or HxW"),
        (["compress", "{model}", "--method", "magic", "--out", "{out}"], 2,
         "Unknown recovery method"),
        (["compress", "{model}", "--scheme", "sparse", "--method", "stagewise",
          "--out", "{out}"], 2, "stagewise"),
        (["compress", "{model}", "--export", "pdf", "--out", "{out}"], 2,
         "Unknown export format"),
        (["compress", "{model}", "--latency", "stopwatch", "--out", "{out}"], 2,
         "stopwatch"),
        (["latency", "{model}", "--runtime", "tvm"], 2, "Unknown runtime"),
        (["blocks", "{npz}"], 1, "Could not load a Keras model"),
        (["latency"], 2, "the following arguments are required: MODEL"),
    ],
)
def test_bad_input_exits_with_one_line_error(files, tmp_path, capsys, args, code,
                                             fragment):
    bad_npz = tmp_path / "bad.npz"
    np.savez(bad_npz, pixels=np.zeros((2, 8, 8, 3)))
    names = dict(files, missing=str(tmp_path / "missing.keras"),
                 out=str(tmp_path / "small.keras"), tmp=str(tmp_path),
                 bad_npz=str(bad_npz))
    assert cli.main([arg.format(**names) for arg in args]) == code
    stdout, stderr = capsys.readouterr()
    assert stdout == ""
    assert stderr.count("\n") == 1
    assert stderr.startswith("keras-practise: error: ")
    assert fragment in stderr
    assert _only_files(tmp_path) == ["bad.npz"]


def test_staged_writes_all_outputs_or_none(tmp_path):
    targets = [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    with pytest.raises(RuntimeError):
        with commands.staged(targets) as temporary:
            for path in temporary:
                pathlib.Path(path).write_text("partial")
            raise RuntimeError("interrupted")
    assert _only_files(tmp_path) == []
    with commands.staged(targets) as temporary:
        for path in temporary:
            pathlib.Path(path).write_text("whole")
    assert _only_files(tmp_path) == ["a.txt", "b.txt"]
    assert pathlib.Path(targets[0]).read_text() == "whole"


def test_staged_moves_what_is_written_beside_a_target(tmp_path):
    # An OpenVINO export writes its weights beside the .xml.
    with commands.staged([str(tmp_path / "m.xml")]) as (staged,):
        pathlib.Path(staged).write_text("graph")
        pathlib.Path(staged[: -len(".xml")] + ".bin").write_text("weights")
    assert _only_files(tmp_path) == ["m.bin", "m.xml"]


def test_image_size_accepts_both_spellings():
    command_line = parser.build_parser()
    for spelling in (["12", "10"], ["12x10"]):
        args = command_line.parse_args(
            ["compress", "m.keras", "--out", "o.keras", "--image-size", *spelling]
        )
        assert args.image_size == (12, 10)


def test_backend_flag_reruns_on_that_backend(files, capfd):
    # Keras is already imported here, so the command must run again in a
    # child process; its output reaches the file descriptors capfd reads.
    other = "torch" if keras.backend.backend() != "torch" else "tensorflow"
    code = cli.main(
        ["--backend", other, "latency", files["dropped"], "--batch-size", "1",
         "--runs", "1", "--warmup", "0", "-q"]
    )
    stdout, stderr = capfd.readouterr()
    assert code == 0, stderr[-2000:]
    assert f"backend={other}" in stdout


@pytest.mark.parametrize(
    "flag, value, setting",
    [
        ("--drop", "0", {"drop": 0}),
        ("--steps", "0", {"steps": 0}),
        ("--finetune-steps", "0", {"finetune_steps": 0}),
        ("--batch-size", "0", {"batch_size": 0}),
        ("--num-samples", "0", {"num_samples": 0}),
        ("--per-class", "0", {"per_class": 0}),
        ("--augment-views", "-1", {"augment_views": -1}),
        ("--latency-batch-size", "-1", {"latency_batch_size": -1}),
        ("--latency-target", "1.5", {"latency_target": 1.5}),
        ("--seed", "-1", {"seed": -1}),
        ("--validation-split", "1", {"validation_split": 1.0}),
        ("--selection", "best", {"selection": "best"}),
        ("--finalists", "0", {"finalists": 0}),
        ("--finalist-steps", "0", {"finalist_steps": 0}),
    ],
)
def test_cli_and_api_reject_the_same_values_before_loading(
    files, tmp_path, capsys, flag, value, setting
):
    # The data file does not exist: an error about the setting shows the
    # check ran before anything was loaded.
    missing = str(tmp_path / "missing.npz")
    with pytest.raises(ValueError) as api_error:
        keras_practise.compress(
            keras.saving.load_model(files["model"]), missing, **setting
        )
    out = str(tmp_path / "small.keras")
    argv = ["compress", files["model"], "--data", missing, flag, value, "--out", out]
    assert cli.main(argv) == 2
    stderr = capsys.readouterr().err
    assert stderr.strip() == f"keras-practise: error: {api_error.value}"
    assert not os.path.exists(out)


def test_quantize_without_export_is_refused_before_loading(files, tmp_path, capsys):
    out = tmp_path / "small.keras"
    argv = [
        "compress", files["model"], "--data", str(tmp_path / "missing.npz"),
        "--out", str(out), "--quantize", "int8", "-q",
    ]
    assert cli.main(argv) == 2
    assert "--quantize goes with --export" in capsys.readouterr().err
    assert not out.exists()
