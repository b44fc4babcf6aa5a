"""Recovery recipes: training the pruned network back to the teacher.

Each recipe drops the chosen blocks, inserts identity adaptors around the
holes (not the `"kd"` and `"fitnet"` baselines), trains with the engine in
`distillation/trainer.py`, and folds the adaptors away, so the result is a
plain model with exactly the layers of `drop_blocks`. `train_whole` is the
whole-network training step that the layer-wise schemes share.

Recipes (`METHODS`):

* `"mimic"`: label-free feature mimicking of the pre-pooling feature map,
  all weights but the classifier trained (the PRACTISE authors' recovery).
* `"mimic_ce"`: cross-entropy + `beta` * feature MSE (needs labels; the
  earlier paper), optimised as MSE + CE / `beta` so that SGD at the
  mimicking learning rate stays stable.
* `"ce"`: plain cross-entropy finetuning (needs labels; the "BP" baseline,
  for comparisons).
* `"kd"`: Hinton's logit distillation at `TrainConfig.temperature`, all
  weights trained, no adaptors (label-free baseline).
* `"fitnet"`: FitNet-style hint mimicking: the feature MSE of `"mimic"`
  with no adaptors inserted (label-free baseline: what the adaptors add).
* `"stagewise"`: the earlier paper's stage-by-stage recovery: for each stage
  with a hole, in network order, adaptors in front of the convs that read
  the stage's signal after the hole are trained (all else frozen) to make
  those convs' outputs mimic the teacher's, then folded; a `"mimic"` (or
  `"mimic_ce"` with labels) finetuning follows.
* `"none"`: no training (the dropped network as it is).
"""

import math

import keras

from keras_practise import backend
from keras_practise.distillation import adaptors as adaptors_lib
from keras_practise.distillation import inference
from keras_practise.distillation import losses as losses_lib
from keras_practise.distillation import optimizer
from keras_practise.distillation import trainer as finetune
from keras_practise.graph import blocks as blocks_lib
from keras_practise.graph import surgery
from keras_practise.graph import taps
from keras_practise.recovery import fold

METHODS = ("mimic", "mimic_ce", "ce", "kd", "fitnet", "stagewise", "none")
# Whole-network trainings of a student without adaptors (`train_whole`).
WHOLE_METHODS = ("mimic", "mimic_ce", "ce", "kd", "fitnet")
LABELLED_METHODS = ("mimic_ce", "ce")


def check_method(method, has_labels):
    """Raises `ValueError` for an unknown method or missing labels."""
    if method not in METHODS:
        raise ValueError(
            f"Unknown recovery method. Expected one of {METHODS}. "
            f"Received: method={method!r}"
        )
    if method in LABELLED_METHODS and not has_labels:
        raise ValueError(
            f"method={method!r} trains on labels, but the tiny set has none. "
            "Use method='mimic' (label-free) or pass labelled data."
        )


def train_whole(student, bank, method, config, adaptor_names=()):
    """Trains all weights of `student` towards the teacher of `bank`.

    Args:
        student: A model with the teacher's head and tap (a pruned or
            compressed copy, adaptors inserted or not); trained in place.
        bank: The `feature_bank.FeatureBank` of the teacher.
        method: One of `WHOLE_METHODS`: `"mimic"`/`"fitnet"` (feature MSE
            at the tap), `"ce"`, `"mimic_ce"` (labels) or `"kd"`.
        config: A `finetune.TrainConfig`.
        adaptor_names: Names of inserted adaptor layers (they train too).

    Returns:
        The loss curve as `(step, loss)` pairs (`[]` when every learning rate
        diverged and the step was skipped). A `"mimic"`/`"fitnet"` run that
        ends with a larger feature MSE on the evaluation views than it
        started from counts as diverged; when the bank's evaluation views
        are held-out images (`bank.held_out`), such a run also ends at the
        check that scored best on them (`finetune.fit(held_out=...)`).
    """
    mode = {"fitnet": "mimic"}.get(method, method)
    finetune.set_trainable(student, mode, adaptor_names, config.batchnorm)
    tap = taps.feature_tap(student)
    x = bank.views["train"]
    if mode == "mimic":
        view = keras.Model(student.input, tap)
        targets, losses = [bank.targets["train"]], ["mse"]
        options = dict(normalize=True, accept=no_worse_check(view, bank))
        if bank.held_out:
            # Stops at its best on images no step trains on: with few
            # images, mimicking fits them past what generalises.
            options["held_out"] = (bank.views["eval"], [bank.targets["eval"]])
    elif mode == "kd":
        view = student
        kd = losses_lib.distillation_loss(student, config.temperature)
        targets, losses = [bank.outputs("train")], [kd]
        options = {}
    elif mode == "ce":
        view = student
        targets = [bank.labels["train"]]
        losses = [losses_lib.classification_loss(student)]
        options = {}
    else:
        view = keras.Model(student.input, [tap, student.outputs[0]])
        ce = losses_lib.classification_loss(student)
        targets = [bank.targets["train"], bank.labels["train"]]
        losses = ["mse", ce]
        # beta * MSE + CE, scaled by 1 / beta: the MSE term keeps the step
        # size of "mimic" (SGD 0.02 on 100 x MSE diverges).
        options = dict(loss_weights=[1.0, 1.0 / config.beta], normalize=True)
    # Steps blind to the scale of BatchNorm-fed kernels: a model and its
    # function-preserving rescalings recover alike (docs/design.md).
    rates = optimizer.scale_free_rates(view, adaptor_names)
    return finetune.fit_or_skip(
        view, x, targets, losses, config, rates=rates, **options
    )


def no_worse_check(view, bank):
    """An `accept` check for `finetune.fit`: the feature MSE on the bank's
    evaluation views (inference mode) did not grow.

    Training-mode BatchNorm can take a run far from where inference ends up
    (tiny feature maps, random statistics): such a run is undone and
    retried rather than handed back worse than the model it started from.

    Args:
        view: The student's model from its input to its feature tap, as it
            is before training.
        bank: The `feature_bank.FeatureBank` of the teacher.

    Returns:
        A callable `() -> bool`: `True` when the feature MSE of `view` on
        `bank.views["eval"]` is at most what it was at this call.
    """
    x, targets = bank.views["eval"], bank.targets["eval"]
    start = inference.feature_mse(view, x, targets)

    def accept():
        after = inference.feature_mse(view, x, targets)
        return after <= start if math.isfinite(start) else math.isfinite(after)

    return accept


def _stagewise(model, blocks, bank, config):
    """Stage-by-stage adaptor training; returns the folded model and curves."""
    current = model
    curves = []
    stages = sorted({b.stage for b in blocks})
    for stage in stages:
        names = [b.name for b in blocks if b.stage == stage]
        holes = blocks_lib.resolve_blocks(current, names)
        sites = [
            s
            for s in adaptors_lib.find_sites(current, holes)
            if s.side == adaptors_lib.BEFORE
        ]
        student, sites = adaptors_lib.insert_adaptors(current, holes, sites)
        if sites:
            convs = [s.conv for s in sites]
            teacher_view = surgery.rewrite(
                model, outputs=[model.get_layer(c).output for c in convs]
            )
            targets = inference.activations(
                teacher_view, bank.views["train"], bank.batch_size
            )
            finetune.set_trainable(
                student, "adaptors", [s.adaptor_name for s in sites]
            )
            view = keras.Model(
                student.input, [student.get_layer(c).output for c in convs]
            )
            curves += finetune.fit_or_skip(
                view, bank.views["train"], targets, ["mse"] * len(convs), config,
                normalize=True,
            )
        current = fold.fold_adaptors(student, sites, name=model.name)
    return current, curves


@backend.fused_kernels()
def recover(model, blocks, bank, method="mimic", config=None):
    """Drops `blocks` from `model` and trains the result back.

    Args:
        model: The teacher (not modified).
        blocks: `Block`s of `model` to drop.
        bank: A `feature_bank.FeatureBank` built on `model`.
        method: One of `METHODS`. Defaults to `"mimic"`.
        config: A `finetune.TrainConfig`. Defaults to `TrainConfig()`.

    Returns:
        A tuple `(compressed, curve)`: the folded Functional model and the
        training loss curve as `(step, loss)` pairs.
    """
    config = config or finetune.TrainConfig()
    check_method(method, bank.labels is not None)
    if method == "none":
        return surgery.drop_blocks(model, blocks), []
    if method in ("kd", "fitnet"):
        student = surgery.drop_blocks(model, blocks)
        curve = train_whole(student, bank, method, config)
        # Rebuilt, so that the compiled training state stays behind.
        return surgery.rewrite(student, name=model.name), curve
    curve = []
    if method == "stagewise":
        model_after, curve = _stagewise(model, blocks, bank, config)
        blocks, start_model = [], model_after
        method = "mimic_ce" if bank.labels is not None else "mimic"
    else:
        start_model = model
    student, sites = adaptors_lib.insert_adaptors(start_model, blocks)
    curve += train_whole(
        student, bank, method, config, [s.adaptor_name for s in sites]
    )
    return fold.fold_adaptors(student, sites, name=model.name), curve
