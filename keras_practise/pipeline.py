"""`compress()`: the whole PRACTISE pipeline, and its report.

tiny set -> score candidates (recoverability) -> select -> drop + adaptors ->
recover -> fold -> a plain Functional `keras.Model`.
"""

import dataclasses
import json
import time

import numpy as np

from keras_practise import backend
from keras_practise import schemes
from keras_practise.data import synthesis
from keras_practise.data import tiny_set as data_lib
from keras_practise.data import views
from keras_practise.distillation import feature_bank
from keras_practise.distillation import trainer as finetune
from keras_practise.export import exporter
from keras_practise.graph import candidates as candidates_lib
from keras_practise.graph import flat_graph as graph_lib
from keras_practise.graph import input_size
from keras_practise.graph import surgery
from keras_practise.profiling import latency as latency_lib
from keras_practise.profiling import macs as macs_lib
from keras_practise.recovery import recipes as recovery
from keras_practise.selection import block_sets
from keras_practise.selection import recoverability as scoring
from keras_practise.selection import savings as savings_lib
from keras_practise.utils import text_table
from keras_practise.utils import validation


@dataclasses.dataclass
class CompressionReport:
    """What `compress()` did, with before/after figures.

    Attributes:
        blocks: Names of the dropped blocks, in network order.
        labels: Their `stage.position` labels.
        method: The recovery recipe.
        scores: The `RecoverabilityReport` (empty when blocks were given).
        params: `(before, after)` parameter counts.
        macs: `(before, after)` multiply-accumulates per image.
        latency_ms: `(before, after)` median latency in ms (`None` when not
            measured), with `latency_batch_size` and `device`.
        latency_reduction: Fraction of latency saved.
        recovery_curve: `(step, loss)` pairs of the recovery training.
        phase_seconds: Wall time per phase.
        tiny_set: Source, size, seed and the drawn indices or files.
        settings: The arguments that shaped the run.
        exported: The `ExportResult` of `export=` as a dict (file, format,
            size, max abs difference in its runtime), or `None`.
        rounds: With `selection="greedy"`, the `RecoverabilityReport` of
            each later choice (remaining candidates scored dropped together
            with the blocks chosen before).
    """

    blocks: list
    labels: list
    method: str
    scores: list
    params: tuple
    macs: tuple
    latency_ms: tuple
    latency_reduction: float
    latency_batch_size: int
    device: str
    recovery_curve: list
    phase_seconds: dict
    tiny_set: dict
    settings: dict
    exported: dict = None
    rounds: list = dataclasses.field(default_factory=list)

    def table(self):
        """The before/after table (and the candidate scores) as text."""
        lines = []
        if self.scores:
            lines += ["Recoverability of the candidates:", self.scores.table(), ""]
        for i, scores in enumerate(self.rounds):
            lines += [
                f"Choice {i + 2}: each candidate dropped with the {i + 1} "
                "chosen before:", scores.table(), "",
            ]
        lines.append(
            f"Dropped {len(self.blocks)} blocks: "
            + ", ".join(f"{n} ({l})" for n, l in zip(self.blocks, self.labels))
            + f"; recovery: {self.method}"
        )
        rows = [("", "before", "after", "change")]
        rows.append(_row("params", self.params, "{:,}"))
        rows.append(_row("MACs", self.macs, "{:,}"))
        if self.latency_ms[0] is not None:
            rows.append(_row(f"latency ms (batch {self.latency_batch_size})",
                             self.latency_ms, "{:.2f}"))
        lines.append(text_table.format_table(rows))
        if self.exported:
            lines.append(f"exported {exporter.ExportResult(**self.exported)}")
        lines.append(
            "phases: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in self.phase_seconds.items())
        )
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def to_dict(self):
        """A JSON-serialisable dict of the report."""
        result = dataclasses.asdict(self)
        result["scores"] = [dataclasses.asdict(s) for s in self.scores]
        return json.loads(json.dumps(result, default=_json_default))


def _row(name, pair, fmt):
    before, after = pair
    change = f"{100 * (after - before) / before:+.1f}%" if before else ""
    return (name, fmt.format(before), fmt.format(after), change)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _check_labels(model, tiny_set):
    if tiny_set.labels is None:
        return
    classes = graph_lib.FlatGraph(model).outputs[0].shape[-1]
    labels = tiny_set.labels
    if labels.min() < 0 or (classes is not None and labels.max() >= classes):
        raise ValueError(
            f"Labels must be class indices in [0, {classes}) to match the "
            f"model's {classes} outputs. Received: labels in "
            f"[{labels.min()}, {labels.max()}]"
        )


def _synthesize(model, num_samples, steps, seed, image_size, verbose):
    size = input_size.model_image_size(model, image_size)
    result = synthesis.synthesize_images(
        model,
        num_images=num_samples or 64,
        image_size=size,
        steps=steps,
        seed=seed,
        verbose=verbose,
    )
    return data_lib.TinySet(
        images=result.images, source="data-free synthesis", seed=seed
    )


def _check_block_only(**settings):
    """Refuses block-dropping settings given with a layer-wise scheme.

    Args:
        **settings: `name=(value, default)` pairs; `data` is `(data is None,
            False)`, since the schemes need images.

    Raises:
        ValueError: If a setting differs from its default, which the scheme
            would otherwise silently ignore.
    """
    changed = sorted(
        name for name, (value, default) in settings.items() if value != default
    )
    if "data" in changed:
        raise ValueError(
            "The layer-wise schemes train on images: pass a tiny set. "
            "Received: data=None"
        )
    if changed:
        received = ", ".join(f"{n}={settings[n][0]!r}" for n in changed)
        raise ValueError(
            f"{changed} apply to scheme='blocks' only; a layer-wise scheme "
            f"would ignore them. Received: {received}"
        )


def check_settings(settings):
    """Checks `compress()`'s scalar arguments before any work starts.

    The command line calls this with its parsed flags before loading the
    model and data, so the API and the CLI accept the same values.

    Args:
        settings: A dict of `compress()` arguments by name; names it does not
            know (the model, the data, callables) are ignored.

    Raises:
        TypeError: If a count is not an integer.
        ValueError: If a value is out of range or not one of the choices.
    """
    counts = {
        "drop": (1, False), "steps": (1, False), "finetune_steps": (1, False),
        "synthesis_steps": (1, False), "batch_size": (1, True),
        "num_samples": (1, True), "per_class": (1, True), "seed": (0, False),
        "augment_views": (0, True), "latency_batch_size": (0, False),
    }
    for name, (minimum, allow_none) in counts.items():
        if name in settings:
            validation.check_int(name, settings[name], minimum, allow_none)
    if "latency_target" in settings:
        validation.check_fraction(
            "latency_target", settings["latency_target"], allow_none=True
        )
    if settings.get("method") is not None:  # None: the default recipe.
        recovery.check_method(settings["method"], True)
    if "latency" in settings:
        savings_lib.check_source(settings["latency"])
    if settings.get("selection", "greedy") not in block_sets.RULES:
        raise ValueError(
            f"`selection` must be one of {block_sets.RULES}. "
            f"Received: selection={settings['selection']!r}"
        )
    if settings.get("verbose", 0) not in (0, 1, 2):
        raise ValueError(
            f"`verbose` must be 0, 1 or 2. Received: verbose={settings['verbose']!r}"
        )


@backend.fused_kernels()
def compress(
    model,
    data=None,
    drop=3,
    latency_target=None,
    blocks=None,
    method=None,
    steps=200,
    finetune_steps=500,
    batch_size=None,
    num_samples=None,
    per_class=None,
    seed=0,
    latency="measured",
    image_size=None,
    augment_views=None,
    preprocess=None,
    data_dir=None,
    latency_batch_size=8,
    synthesis_steps=1000,
    selection="greedy",
    verbose=1,
    return_report=False,
    callbacks=None,
    export=None,
    scheme="blocks",
    **scheme_options,
):
    """Makes `model` faster by dropping blocks and recovering from a tiny set.

    Args:
        model: A trained Functional or Sequential `keras.Model`. It is not
            modified.
        data: The tiny set, labelled or not: a numpy array (or `(images,
            labels)`), a `tf.data.Dataset`, a `keras.utils.PyDataset`, a torch
            `DataLoader`, an image folder, a tensorflow-datasets name, or a
            `TinySet`. `None` synthesises images from the model itself
            (data-free, DeepInversion-style).
        drop: Number of blocks to drop. Defaults to `3`.
        latency_target: Fraction of latency to remove instead of a count
            (e.g. `0.2`); overrides `drop`.
        blocks: Blocks to drop (names, `stage.position` labels or `Block`s),
            skipping selection; overrides `drop` and `latency_target`.
        method: Recovery recipe, one of `recovery.METHODS` for blocks
            (defaults to `"mimic"`, label-free feature mimicking) or of
            `schemes.METHODS` for a layer-wise scheme (defaults to
            `"layerwise"`, the per-layer adaptors alone; the baselines
            `"ce"`, `"kd"` and `"fitnet"` exist for both).
        steps: Adaptor-training steps per candidate for recoverability.
            Defaults to `200`.
        finetune_steps: Optimizer steps of the recovery (a layer-wise
            scheme's whole-network training). Defaults to `500`.
        batch_size: Batch size. Defaults to `min(64, number of views)`.
        num_samples: Images to draw from `data` (or to synthesise).
        per_class: Images per class to draw instead (1 = "1-shot").
        seed: Seed of the draw, augmentation and training order.
        latency: How a block's latency saving is assessed for its score:
            `"measured"` (Keras), `"macs"`, a runtime (`"onnxruntime"`,
            `"litert"`, `"openvino"`) or a callable `f(model) ->
            milliseconds` (see `recoverability`).
        image_size: Input size for models with a dynamic input shape: the
            tiny set, scores, MACs and latency use this size, and the
            returned model accepts any size again, like `model`.
        augment_views: Augmented views per image (see
            `views.prepare_views`).
        preprocess: Callable applied to loaded images, e.g.
            `keras.applications.resnet.preprocess_input`.
        data_dir: Folder of prepared tensorflow-datasets datasets.
        latency_batch_size: Batch size of the before/after latency figures
            (`0` skips measuring them).
        synthesis_steps: Optimisation steps per batch of synthesised images
            when `data` is `None`.
        selection: How the set of blocks is chosen (`block_sets.RULES`):
            `"greedy"` (default: each further block scored again with the
            blocks already chosen dropped), `"independent"` or
            `"one_per_stage"`.
        verbose: 0 silent, 1 progress bars, 2 also prints the report.
        return_report: Also return the `CompressionReport`.
        callbacks: Keras callbacks passed to every training `fit`: the
            adaptor training of each candidate and the recovery (e.g.
            `CSVLogger`, `TensorBoard`, `EarlyStopping(monitor="loss")`).
        export: Also export the result for a runtime: a `.onnx`, `.tflite`
            or `.xml` (OpenVINO) path, or a `(format, path)` pair (see
            `keras_practise.export`). The file is checked in its runtime on
            the tiny set and recorded in the report.
        scheme: `"blocks"` (this pipeline) or a layer-wise scheme of
            `keras_practise.schemes` (`"filters"`, `"decouple"`,
            `"lowrank"`, `"sparse"`), which then gets `steps` (per layer),
            `method`, `finetune_steps`, the data arguments and
            `**scheme_options` (e.g. `keep=0.5`,
            `rank=3`, `energy=0.4`, `sparsity=0.9`); see
            `schemes.compress_with_scheme`.
        **scheme_options: Arguments of the layer-wise schemes.

    Returns:
        The compressed Functional `keras.Model` (saves to `.keras` and reloads
        without `custom_objects`), or `(model, report)` with
        `return_report=True`.

    Raises:
        TypeError: If `model` is not a Functional or Sequential model, or
            `data` is of an unsupported kind.
        ValueError: If the model has no droppable blocks, `drop` exceeds
            them, the data is empty or mis-shaped, labels do not match the
            classifier, or an argument is out of range. All checks run
            before any training.

    Example:

    ```python
    small, report = keras_practise.compress(
        model, (images, labels), drop=3, return_report=True
    )
    print(report)
    small.save("small.keras")
    ```
    """
    if scheme != "blocks" and scheme not in schemes.SCHEMES:
        raise ValueError(
            f"Unknown scheme. Expected 'blocks' or one of {schemes.SCHEMES}. "
            f"Received: scheme={scheme!r}"
        )
    if scheme == "blocks" and scheme_options:
        raise TypeError(
            "Block dropping takes no layer-wise scheme arguments. Received: "
            f"{sorted(scheme_options)} with scheme='blocks'"
        )
    if scheme != "blocks":
        _check_block_only(
            latency_target=(latency_target, None), blocks=(blocks, None),
            latency=(latency, "measured"), synthesis_steps=(synthesis_steps, 1000),
            selection=(selection, "greedy"), data=(data is None, False),
        )
        return schemes.compress_with_scheme(
            model, data, scheme=scheme, steps=steps, batch_size=batch_size,
            num_samples=num_samples, per_class=per_class, seed=seed,
            image_size=image_size, augment_views=augment_views,
            preprocess=preprocess, data_dir=data_dir, verbose=verbose,
            return_report=return_report, callbacks=callbacks, export=export,
            method=method or "layerwise", finetune_steps=finetune_steps,
            **scheme_options,
        )
    method = method or "mimic"
    settings = {
        "drop": drop, "latency_target": latency_target, "method": method,
        "steps": steps, "finetune_steps": finetune_steps,
        "batch_size": batch_size, "num_samples": num_samples,
        "per_class": per_class, "seed": seed, "latency": latency,
        "augment_views": augment_views,
        "latency_batch_size": latency_batch_size,
        "synthesis_steps": synthesis_steps, "verbose": verbose,
        "selection": selection,
    }
    check_settings(settings)
    phases = {}
    started = time.perf_counter()
    export_target = None if export is None else exporter.resolve_target(export)
    # A size-agnostic model is worked on at `image_size`; the result gets the
    # user's input signature back at the end.
    input_shape = graph_lib.input_shape(model)[1:]
    teacher, candidates, chosen = candidates_lib.working_copy(
        model, image_size, blocks
    )
    if chosen is None and latency_target is None:
        block_sets.check_drop(drop, len(candidates))
    config = finetune.TrainConfig(
        steps=steps, batch_size=batch_size, seed=seed, callbacks=callbacks
    )
    recover_config = finetune.TrainConfig(
        steps=finetune_steps, batch_size=batch_size, seed=seed, verbose=verbose,
        callbacks=callbacks,
    )

    if data is None:
        tiny_set = _synthesize(
            teacher, num_samples, synthesis_steps, seed, image_size, verbose
        )
    else:
        tiny_set = views.load_for_model(
            teacher, data, num_samples, per_class, seed, image_size,
            preprocess, data_dir,
        )
    _check_labels(teacher, tiny_set)
    recovery.check_method(method, tiny_set.labels is not None)
    phases["data"] = time.perf_counter() - started

    t = time.perf_counter()
    bank, _ = feature_bank.build_bank(
        teacher, tiny_set, seed=seed, image_size=image_size,
        augment_views=augment_views,
        cuts=[] if chosen is not None else scoring.candidate_cuts(teacher, candidates),
    )
    phases["teacher features"] = time.perf_counter() - t

    scores, rounds = scoring.RecoverabilityReport(), []
    if chosen is None:
        t = time.perf_counter()
        choice = block_sets.choose_blocks(
            teacher, bank, candidates,
            k=None if latency_target is not None else drop,
            rule=selection, config=config, latency=latency,
            latency_target=latency_target, verbose=verbose,
        )
        scores, chosen, rounds = choice.rounds[0], choice.blocks, choice.rounds[1:]
        phases["recoverability"] = time.perf_counter() - t
    bank.release()

    t = time.perf_counter()
    compressed, curve = recovery.recover(
        teacher, chosen, bank, method, recover_config
    )
    phases["recovery"] = time.perf_counter() - t

    t = time.perf_counter()
    latency_ms, reduction, device = (None, None), None, None
    if latency_batch_size:
        result = latency_lib.compare_latency(
            {"original": teacher, "compressed": compressed},
            batch_size=latency_batch_size,
        )
        latency_ms = (result.results["original"].median_ms, result.results["compressed"].median_ms)
        reduction = result.reductions["compressed"]
        device = result.results["original"].device
    phases["latency"] = time.perf_counter() - t
    phases["total"] = time.perf_counter() - started

    report = CompressionReport(
        blocks=[b.name for b in chosen],
        labels=[b.label for b in chosen],
        method=method,
        scores=scores,
        params=(macs_lib.count_params(teacher), macs_lib.count_params(compressed)),
        macs=(macs_lib.count_macs(teacher), macs_lib.count_macs(compressed)),
        latency_ms=latency_ms,
        latency_reduction=reduction,
        latency_batch_size=latency_batch_size,
        device=device,
        recovery_curve=curve,
        phase_seconds=phases,
        tiny_set={
            "source": tiny_set.source,
            "size": len(tiny_set),
            "labelled": tiny_set.labels is not None,
            "seed": tiny_set.seed,
            "indices": _as_list(tiny_set.indices),
        },
        settings=settings,
        rounds=rounds,
    )
    if teacher is not model:
        compressed = surgery.rewrite(compressed, input_shape=input_shape)
    if export_target is not None:
        t = time.perf_counter()
        path, format = export_target
        report.exported = dataclasses.asdict(exporter.export(
            compressed, path, format, sample=tiny_set.images[:8]
        ))
        phases["export"] = time.perf_counter() - t
    if verbose >= 2:
        print(report.table())
    return (compressed, report) if return_report else compressed


def _as_list(indices):
    if indices is None:
        return None
    return [str(i) if not isinstance(i, (int, np.integer)) else int(i) for i in indices]
