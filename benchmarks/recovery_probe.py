"""Why the mimic recovery does not help the real EfficientNet-Lite0.

docs/results_real_network.md found the library's recovery rejected at every
learning rate on the pretrained Lite0 at small budgets. This probe drops a
fixed set of blocks and recovers it several ways from the same in-domain
tiny set (`--method_size` views of `--train_photographs` of foolbox's
photographs), then
measures each result on views of the other photographs, which no training
step saw:

* `whole_train`: the library's `"mimic"` recipe (all weights but the
  classifier, BatchNorm in training mode: `TrainConfig(batchnorm="train")`);
* `whole_inference`: the same with every BatchNorm frozen in inference mode
  (`TrainConfig(batchnorm="inference")`);
* `adaptors`: only the 1x1 adaptors train (BatchNorm in inference mode),
  as when recoverability is scored, then they are folded;
* each of them with the suffix `_photos`: the tiny set is the training
  photographs themselves (as a user would pass them), each giving
  `--method_size` x `--augment_views` / photographs training views;
* and with the suffix `_held`: the same, less the photographs
  `--probe_validation_split` holds out whole
  (`compress(validation_split=...)`); the run is checked on those and ends
  at the check that scored best on them (`trainer.fit(held_out=...)`).

Each row gives whether the run was accepted (the library's check: the
feature MSE on the tiny set's evaluation views did not grow), the training
loss at its first and last logged step, the feature MSE at the tap on the
held-out views (in units of the teacher's feature variance there), top-1
agreement with the teacher and KL(teacher || student) on them.

    KERAS_BACKEND=torch python -m benchmarks.recovery_probe \
        --image_size 96 --probe_steps 20,200 \
        --probe_variants whole_inference_photos,whole_inference_held
"""

import dataclasses
import time
import warnings

from absl import app
from absl import flags

from benchmarks import harness
from benchmarks import photographs
from benchmarks import real_network

# The image size, tiny-set, test-view, batch, seed and output flags are
# benchmarks.real_network's (one absl registry); these defaults suit the probe.
flags.set_default(real_network._IMAGE_SIZE, 96)
flags.set_default(real_network._AUGMENT_VIEWS, 2)
flags.set_default(real_network._BATCH_SIZE, 16)
flags.set_default(real_network._TEST_VIEWS, 300)
_IMAGE_SIZE = real_network._IMAGE_SIZE
_VIEWS = real_network._METHOD_SIZE
_AUGMENT_VIEWS = real_network._AUGMENT_VIEWS
_BATCH_SIZE = real_network._BATCH_SIZE
_TEST_VIEWS = real_network._TEST_VIEWS
_TRAIN_PHOTOGRAPHS = real_network._TRAIN_PHOTOGRAPHS
_SEED = real_network._SEED
_OUTPUT = real_network._OUTPUT
_BLOCKS = flags.DEFINE_list("probe_blocks", ["block4c", "block5c"], "Blocks to drop.")
_STEPS = flags.DEFINE_list("probe_steps", ["20", "200"], "Recovery steps.")
_RATE = flags.DEFINE_float("probe_learning_rate", 0.02, "First SGD learning rate.")
_VARIANTS = flags.DEFINE_list(
    "probe_variants", ["whole_train", "whole_inference", "adaptors"], "Recoveries."
)
_SPLIT = flags.DEFINE_float(
    "probe_validation_split", 0.2, "Photographs held out by `_held` variants."
)


def _recover(teacher, blocks, bank, variant, config):
    """The folded student and its loss curve (`[]`: rejected)."""
    import keras

    from keras_practise.distillation import adaptors as adaptors_lib
    from keras_practise.distillation import trainer
    from keras_practise.graph import taps
    from keras_practise.recovery import fold
    from keras_practise.recovery import recipes

    if not variant.startswith("adaptors"):
        return recipes.recover(teacher, blocks, bank, "mimic", config)
    student, sites = adaptors_lib.insert_adaptors(teacher, blocks)
    trainer.set_trainable(student, "adaptors", [s.adaptor_name for s in sites])
    view = keras.Model(student.input, taps.feature_tap(student))
    held_out = None
    if bank.held_out:
        held_out = (bank.views["eval"], [bank.targets["eval"]])
    curve = trainer.fit_or_skip(
        view, bank.views["train"], [bank.targets["train"]], ["mse"], config,
        normalize=True, accept=recipes.no_worse_check(view, bank), held_out=held_out,
    )
    return fold.fold_adaptors(student, sites, name=teacher.name), curve


def _feature_error(model, teacher_features, scale, test):
    import keras
    import numpy as np

    from keras_practise.graph import taps

    view = keras.Model(model.input, taps.feature_tap(model))
    features = view.predict(test, batch_size=64, verbose=0)
    return float(np.mean(np.square(features - teacher_features)) / scale)


def main(argv):
    del argv
    import keras

    from keras_practise.data import augment
    from keras_practise.data import views
    from keras_practise.distillation import feature_bank
    from keras_practise.distillation import trainer
    from keras_practise.graph import blocks as blocks_lib
    from keras_practise.graph import surgery
    from keras_practise.graph import taps

    started = time.perf_counter()
    keras.utils.set_random_seed(_SEED.value)
    teacher = photographs.build_teacher("lite0", _IMAGE_SIZE.value)
    data = photographs.Data(
        teacher, _IMAGE_SIZE.value, _TRAIN_PHOTOGRAPHS.value, _TEST_VIEWS.value,
        _SEED.value,
    )
    teacher_test = teacher.predict(data.test, batch_size=64, verbose=0)
    tap = keras.Model(teacher.input, taps.feature_tap(teacher))
    teacher_features = tap.predict(data.test, batch_size=64, verbose=0)
    scale = trainer.feature_scale(teacher_features)
    images, labels = data.tiny_set("in_domain", _VIEWS.value)
    spec = views.TinySetSpec(
        (images, labels), augment_views=_AUGMENT_VIEWS.value, seed=_SEED.value
    )
    photos = augment.resize(
        data.photos[data.train], round(_IMAGE_SIZE.value / 0.875)
    )
    per_photo = -(-_VIEWS.value * _AUGMENT_VIEWS.value // len(photos))
    specs = {
        "": spec,
        "_photos": views.TinySetSpec(
            (photos, data.photo_labels[data.train]), augment_views=per_photo,
            seed=_SEED.value,
        ),
    }
    specs["_held"] = dataclasses.replace(
        specs["_photos"], validation_split=_SPLIT.value
    )
    banks = {}

    def bank_for(variant):
        kind = next((k for k in ("_photos", "_held") if variant.endswith(k)), "")
        if kind not in banks:
            banks[kind], _ = feature_bank.build_bank(
                teacher, specs[kind], batch_size=_BATCH_SIZE.value
            )
        return banks[kind]
    blocks = blocks_lib.resolve_blocks(teacher, _BLOCKS.value)

    def row(variant, rate, steps, model, curve, seconds):
        metrics = real_network.evaluate(model, data, teacher_test)
        first = f"{curve[0][1]:.4f}" if curve else "-"
        last = f"{curve[-1][1]:.4f}" if curve else "-"
        return [
            variant, f"{rate:g}", str(steps), "yes" if curve else "no", first, last,
            f"{_feature_error(model, teacher_features, scale, data.test):.4f}",
            f"{100 * metrics['agreement']:.1f}", f"{metrics['kl']:.3f}",
            f"{seconds:.0f}",
        ]

    dropped = surgery.drop_blocks(teacher, blocks)
    rows = [row("dropped, no training", 0, 0, dropped, [], 0)]
    print(rows[-1], flush=True)
    for variant in _VARIANTS.value:
        for steps in (int(s) for s in _STEPS.value):
            config = trainer.TrainConfig(
                steps=steps, batch_size=_BATCH_SIZE.value,
                learning_rate=_RATE.value, seed=_SEED.value,
                batchnorm=(
                    "inference" if variant.startswith("whole_inference") else "train"
                ),
            )
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model, curve = _recover(
                    teacher, blocks, bank_for(variant), variant, config
                )
            rows.append(row(variant, config.learning_rate, steps, model, curve,
                            time.perf_counter() - start))
            print(rows[-1], flush=True)
    header = [
        "recovery", "first rate", "steps", "accepted", "train loss first",
        "train loss last", "held-out feature MSE", "agreement %", "KL", "s",
    ]
    text = (
        f"Lite0 at {_IMAGE_SIZE.value} px, blocks {', '.join(_BLOCKS.value)} "
        f"dropped; tiny set {_VIEWS.value} views of {_TRAIN_PHOTOGRAPHS.value} "
        f"photographs x {_AUGMENT_VIEWS.value} augmented views; "
        f"{len(data.test)} held-out views; batch {_BATCH_SIZE.value}; "
        f"backend {keras.backend.backend()}; wall "
        f"{time.perf_counter() - started:.0f} s.\n\n"
        + harness.markdown_table(header, rows)
    )
    print(text)
    if _OUTPUT.value:
        harness.write_atomically(_OUTPUT.value, text + "\n")


if __name__ == "__main__":
    app.run(main)
