"""`compress()`: one pipeline for every scheme.

validate -> tiny-set specification -> the scheme's run (`schemes/`) -> the
shared tail: the user's input signature back, latency before/after, export,
report.
"""

import dataclasses
import os
import tempfile
import warnings

from keras_practise import backend
from keras_practise.data import views
from keras_practise.distillation import memory as memory_lib
from keras_practise.distillation import trainer
from keras_practise.export import exporter
from keras_practise.graph import flat_graph as graph_lib
from keras_practise.graph import input_size
from keras_practise.graph import surgery
from keras_practise.profiling import latency as latency_lib
from keras_practise.recovery import fidelity
from keras_practise.recovery import recipes
from keras_practise.schemes import base
from keras_practise.schemes import registry
from keras_practise.schemes.block_dropping import CompressionReport
from keras_practise.utils import validation

__all__ = ["CompressionReport", "check_settings", "compress"]

# Scalar settings every scheme shares: name -> (minimum, None allowed).
_COUNTS = {
    "finetune_steps": (1, False), "batch_size": (1, True),
    "num_samples": (1, True), "per_class": (1, True), "seed": (0, False),
    "augment_views": (0, True), "latency_batch_size": (0, False),
}


def _scheme_options(scheme, settings):
    """The chosen scheme's options from `settings`, defaults filled in.

    `compress()` passes block dropping's options always (they are its own
    parameters), at their defaults unless the user set them; the other
    schemes' options come only when the user set them.

    Raises:
        TypeError: If a name is no option of the chosen scheme and not one
            of `compress()`'s own parameters.
        ValueError: If one of block dropping's options is set for another
            scheme (it would silently ignore it).
    """
    own = registry.entry(scheme).defaults
    blocks = registry.entry("blocks").defaults
    owners = {}
    for entry in registry.ENTRIES:
        for name in entry.defaults:
            owners.setdefault(name, []).append(entry.name)
    given = {n: v for n, v in settings.items() if n not in own and v is not None}
    taken = sorted(n for n in given if n not in blocks)
    if taken:
        where = {n: owners.get(n, "no scheme") for n in taken}
        raise TypeError(
            f"Scheme {scheme!r} takes no arguments {taken} (options of {where}). "
            f"Its options: {sorted(own)}"
        )
    ignored = sorted(n for n, v in given.items() if n in blocks and v != blocks[n])
    if ignored:
        received = ", ".join(f"{n}={settings[n]!r}" for n in ignored)
        raise ValueError(
            f"{ignored} apply to scheme='blocks' only; scheme={scheme!r} "
            f"would ignore them. Received: {received}"
        )
    return {n: d if settings.get(n) is None else settings[n] for n, d in own.items()}


def check_settings(settings):
    """Checks `compress()`'s scalar arguments before any work starts.

    The command line calls this with its parsed flags before loading the
    model and data, so the API and the CLI accept the same values.

    Args:
        settings: A dict of `compress()` arguments by name (`scheme`
            defaults to `"blocks"`); the model, the data and callables are
            not looked at.

    Returns:
        The chosen scheme's options, defaults filled in.

    Raises:
        TypeError: If a count is not an integer, or an option is unknown.
        ValueError: If a value is out of range or not one of the choices, or
            an option of another scheme is set.
    """
    scheme_name = settings.get("scheme", "blocks")
    scheme = registry.load(scheme_name)
    shared = set(_COUNTS) | {
        "scheme", "steps", "method", "verbose", "min_agreement", "strict",
        "quantize", "validation_split", "memory_budget",
    }
    options = _scheme_options(
        scheme_name, {n: v for n, v in settings.items() if n not in shared}
    )
    validation.check_int("steps", settings.get("steps", 200), scheme.min_steps)
    for name, (minimum, allow_none) in _COUNTS.items():
        if name in settings:
            validation.check_int(name, settings[name], minimum, allow_none)
    method = settings.get("method")
    if method is not None and method not in scheme.methods:
        raise ValueError(
            f"Unknown recovery method for scheme {scheme_name!r}. Expected one "
            f"of {scheme.methods}. Received: method={method!r}"
        )
    agreement = settings.get("min_agreement", 0.0)
    if isinstance(agreement, bool) or not isinstance(agreement, (int, float)) or not (
        0 <= agreement <= 1
    ):
        raise ValueError(
            "`min_agreement` must be a number in [0, 1]. Received: "
            f"min_agreement={agreement!r}"
        )
    validation.check_fraction(
        "validation_split", settings.get("validation_split", 0.0), allow_zero=True
    )
    memory_lib.check_budget(settings.get("memory_budget"))
    if settings.get("verbose", 0) not in (0, 1, 2):
        raise ValueError(
            f"`verbose` must be 0, 1 or 2. Received: verbose={settings['verbose']!r}"
        )
    scheme.check(options)
    return options


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
    selection="auto",
    verbose=1,
    return_report=False,
    callbacks=None,
    export=None,
    scheme="blocks",
    min_agreement=0.8,
    strict=False,
    quantize=None,
    validation_split=0.0,
    memory_budget=memory_lib.DEFAULT_BUDGET_GIB,
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
            and, with `quantize`, of the int8 file's latency in its runtime
            against the float export of the same model (`0` skips measuring
            them).
        synthesis_steps: Optimisation steps per batch of synthesised images
            when `data` is `None`.
        selection: How the set of blocks is chosen (`block_sets.RULES`):
            `"shortlist"`: up to `finalists` sets (the combinations of the
            blocks whose dropping changes the features least) are each
            recovered briefly with `method` (an audition of
            `finalist_steps`) once per part of the images
            (`finalist_folds`, 2), trained on the other parts, and the one
            that stays closest to the teacher on the held-out parts (top-1
            agreement, then output error) is recovered in full
            (`recovery/auditions.py`);
            `"greedy"`: by recoverability, each further block scored again
            with the blocks already chosen dropped (the paper's adaptor
            training); `"independent"`, `"one_per_stage"`. Defaults to
            `"auto"`: `"shortlist"` when each audition gets at least 100
            steps (`finetune_steps >= 500` by default), else `"greedy"`
            (shorter auditions were measured to mislead; docs/results.md,
            "Choosing blocks by brief recoveries").
        verbose: 0 silent, 1 progress bars, 2 also prints the report.
        return_report: Also return the `CompressionReport`.
        callbacks: Keras callbacks passed to every training `fit`: the
            adaptor training of each candidate and the recovery (e.g.
            `CSVLogger`, `TensorBoard`, `EarlyStopping(monitor="loss")`).
        export: Also export the result for a runtime: a `.onnx`, `.tflite`
            or `.xml` (OpenVINO) path, or a `(format, path)` pair (see
            `keras_practise.export`). The file is checked in its runtime on
            the tiny set and recorded in the report.
        scheme: A name in `schemes.SCHEMES`: `"blocks"` (block dropping) or
            a layer-wise scheme (`"filters"`, `"decouple"`, `"lowrank"`,
            `"sparse"`), which then gets `steps` (per layer), `method`,
            `finetune_steps`, the data arguments and `**scheme_options`.
        min_agreement: The guard: when the result agrees with the teacher's
            top-1 class on fewer of the held-out views than this (see the
            report's `fidelity`), `compress()` warns (`FidelityWarning`),
            naming the setting to relax. `0` turns the guard off.
            Defaults to `0.8`.
        strict: Raise a `FidelityError` instead of warning (nothing is
            returned or exported).
        quantize: With `export`: `"int8"` has the runtime's own
            post-training quantizer (LiteRT's converter, ONNX Runtime's
            `quantize_static`, NNCF for OpenVINO) calibrate on the tiny set;
            the file is checked against the float model on the held-out
            views (top-1 agreement at least 0.9, see `keras_practise.export`).
            Unless `latency_batch_size` is `0`, the report's `int8_latency`
            times it against a float export of the same model (written to a
            temporary folder, then removed) in its runtime.
        validation_split: Fraction of the tiny set's images to hold out
            whole from training (Keras' `fit` has the same argument): the
            selection scores, the recovery's checks (it ends at its best on
            them) and the report's `fidelity` then use those images only,
            which no training step saw. `0` (the default) trains on every
            image and judges on new views of them, kinder judges than new
            images (docs/results_real_network.md measures both).
        memory_budget: GiB that the tiny set's views, the teacher's
            features and the training may take together (the framework,
            about 1 GB, comes on top): beyond it, fewer augmented views
            per image are made (an explicit `augment_views` is kept),
            students start from the images where the teacher's activations
            at their cut do not fit, and batches are split into
            micro-batches whose gradients are averaged (each optimizer step
            still sees `batch_size` samples; only BatchNorm statistics see
            the smaller batches). `None` bounds nothing. Defaults to `4`
            (see `distillation.memory`).
        **scheme_options: Options of block dropping's `"shortlist"`
            selection, its budget: `finalists` (most sets recovered
            briefly, `20`), `finalist_steps` (steps of each, default a
            fifth of `finetune_steps`) and `finalist_folds` (parts of the
            images each set is auditioned on, trained on the others, `2`;
            `1` trains on all of them and judges on new views). Options
            of the layer-wise schemes (their
            `schemes.registry` entries): `keep` (filters, `0.75`: fraction of
            filters kept, or a dict per conv), `layers` (convs to compress;
            filters also takes residual streams), `rank` (decouple:
            depthwise filters per channel, `3`; lowrank: a fraction or count
            instead of `energy`), `energy` (lowrank, `0.95`), `sparsity`
            (sparse, `0.5`), `learning_rate` (per-layer SGD, `0.01`). The
            papers' settings (`keep=0.5`, `energy=0.4`, `sparsity=0.9`)
            bring small networks near chance or far below their teacher
            (docs/results_fidelity.md).

    Returns:
        The compressed Functional `keras.Model` (saves to `.keras` and reloads
        without `custom_objects`), or `(model, report)` with
        `return_report=True`.

    Raises:
        TypeError: If `model` is not a Functional or Sequential model,
            `data` is of an unsupported kind, or `**scheme_options` holds a
            name no scheme takes.
        ValueError: If the model has no droppable blocks, `drop` exceeds
            them, the data is empty or mis-shaped, labels do not match the
            classifier, an argument is out of range, or an option of another
            scheme is set. All checks run before any training.

    Example:

    ```python
    small, report = keras_practise.compress(
        model, (images, labels), drop=3, return_report=True
    )
    print(report)
    small.save("small.keras")
    ```
    """
    registry.entry(scheme)  # An unknown scheme is named first.
    shared = {
        "method": method, "steps": steps, "finetune_steps": finetune_steps,
        "batch_size": batch_size, "num_samples": num_samples,
        "per_class": per_class, "seed": seed, "augment_views": augment_views,
        "latency_batch_size": latency_batch_size, "verbose": verbose,
        "min_agreement": min_agreement, "strict": strict,
        "validation_split": validation_split, "memory_budget": memory_budget,
    }
    options = check_settings({
        **shared, "scheme": scheme, "drop": drop,
        "latency_target": latency_target, "blocks": blocks,
        "latency": latency, "synthesis_steps": synthesis_steps,
        "selection": selection, **scheme_options,
    })
    chosen = registry.load(scheme)
    if data is None and chosen.needs_data:
        raise ValueError(
            f"Scheme {scheme!r} trains on images: pass a tiny set. Received: data=None"
        )
    graph_lib.check_graph_model(model)
    graph_lib.check_channels_last(model)
    callbacks = trainer.check_callbacks(callbacks)
    if quantize is not None and export is None:
        raise ValueError(
            "`quantize` applies to the exported file: pass `export` too. "
            f"Received: quantize={quantize!r}, export=None"
        )
    export_target = None
    if export is not None:
        export_target = exporter.resolve_target(export, quantize=quantize)
    job = _job(scheme, chosen, data, shared, options, image_size, preprocess, data_dir,
               callbacks)
    phases = {}
    with base.timed(phases, "total"):
        outcome = chosen.run(model, job, phases)
        report = _finish(
            model, job, outcome, latency_batch_size, export_target, quantize,
            phases,
        )
    if verbose >= 2:
        print(report.table())
    compressed = outcome.compressed
    return (compressed, report) if return_report else compressed


def _job(name, scheme, data, shared, options, image_size, preprocess, data_dir,
         callbacks):
    tiny = views.TinySetSpec(
        data, num_samples=shared["num_samples"], per_class=shared["per_class"],
        seed=shared["seed"], image_size=image_size,
        augment_views=shared["augment_views"], preprocess=preprocess,
        data_dir=data_dir, validation_split=shared["validation_split"],
    )
    return base.Job(
        tiny=tiny, method=shared["method"] or scheme.methods[0],
        steps=shared["steps"], finetune_steps=shared["finetune_steps"],
        batch_size=shared["batch_size"], seed=shared["seed"],
        verbose=shared["verbose"], callbacks=callbacks, options=options,
        settings=shared, scheme=name,
        memory=memory_lib.MemoryPlan(shared["memory_budget"]),
    )


def _finish(model, job, outcome, latency_batch_size, export_target, quantize,
            phases):
    """The tail every scheme shares; fills the report's shared fields."""
    report = outcome.report
    with base.timed(phases, "fidelity"):
        size = input_size.model_image_size(outcome.teacher)
        held_out, labels = job.held_out_views(outcome.tiny_set, size)
        unseen = bool(job.tiny.validation_split)
        report.fidelity = fidelity.estimate(
            outcome.teacher, outcome.compressed, held_out, labels,
            unseen_images=unseen,
        )
        if job.method in recipes.LABELLED_METHODS and not unseen:
            warnings.warn(
                f"method={job.method!r} trained on the tiny set's labels and "
                "the fidelity estimate judges new crops of those same images, "
                "so it overstates how well the result generalises (a "
                "recovery that learnt the labels by heart agrees with the "
                "teacher as often as the teacher agrees with the labels). "
                "Pass validation_split=0.2 to judge on images no training saw.",
                stacklevel=3,
            )
        entry = registry.entry(job.scheme)
        relax = " or ".join(
            n if job.options[n] is None else f"{n}={job.options[n]!r}"
            for n in entry.relax
        )
        fidelity.check(
            report.fidelity, job.settings["min_agreement"], relax,
            strict=job.settings["strict"],
        )
    with base.timed(phases, "latency"):
        if latency_batch_size:
            result = latency_lib.compare_latency(
                {"original": outcome.teacher, "compressed": outcome.compressed},
                batch_size=latency_batch_size,
            )
            report.latency_ms = (
                result.results["original"].median_ms,
                result.results["compressed"].median_ms,
            )
            report.latency_reduction = result.reductions["compressed"]
            report.device = result.results["original"].device
        report.latency_batch_size = latency_batch_size
    # A fresh graph (no training state left on it) with the user's input
    # signature (a size-agnostic model was worked on at `image_size`) and
    # the user's model name.
    outcome.compressed = surgery.rewrite(
        outcome.compressed, name=model.name,
        input_shape=graph_lib.input_shape(model)[1:],
    )
    if export_target is not None:
        with base.timed(phases, "export"):
            path, format = export_target
            check = {"sample": outcome.sample}
            if quantize is not None:
                # Calibrated on the tiny set, checked on views it never saw.
                _, calibration, _ = views.prepare_views(
                    outcome.tiny_set, size, augment_views=0
                )
                check = dict(
                    sample=held_out, quantize=quantize, calibration=calibration
                )
            exported = exporter.export(outcome.compressed, path, format, **check)
            report.exported = dataclasses.asdict(exported)
        if quantize is not None and latency_batch_size:
            with base.timed(phases, "int8 latency"):
                report.int8_latency = _int8_latency(
                    outcome.compressed, exported, outcome.sample, latency_batch_size
                )
    return report


def _int8_latency(model, int8, sample, batch_size):
    """The int8 file timed against a float export of `model`, interleaved.

    The float file is written (and checked on `sample`) into a temporary
    folder that is removed afterwards; both run in the int8 file's runtime
    with its default threads, at the report's latency batch size, so the
    ratio sits beside the report's Keras before/after figures.

    Returns:
        A dict: `runtime`, `batch_size`, `runs`, `float_ms` and `int8_ms`
        (medians) and `ratio` (`int8_ms / float_ms`).
    """
    suffix = exporter.FORMATS[int8.format].suffix
    with tempfile.TemporaryDirectory(prefix="keras_practise_float_") as folder:
        float_file = exporter.export(
            model, os.path.join(folder, f"float{suffix}"), int8.format,
            sample=sample,
        )
        result = latency_lib.compare_exported_latency(
            {"float": float_file, "int8": int8},
            input_shape=tuple(sample.shape[1:]), batch_size=batch_size,
        )
    timed = result.results
    return {
        "runtime": timed["int8"].runtime, "batch_size": batch_size,
        "runs": timed["int8"].runs, "float_ms": timed["float"].median_ms,
        "int8_ms": timed["int8"].median_ms, "ratio": result.ratios["int8"],
    }


def compress_with_scheme(model, data=None, scheme="filters", **kwargs):
    """Deprecated: `compress(model, data, scheme=scheme, **kwargs)`.

    Kept so that code written for the layer-wise schemes' former entry
    point runs unchanged (its defaults were those of `compress` with a
    layer-wise scheme); it warns once per call site.

    Args:
        model: As for `compress`.
        data: As for `compress`.
        scheme: A layer-wise scheme (`"filters"`, `"decouple"`, `"lowrank"`
            or `"sparse"`). Defaults to `"filters"`, as it did.
        **kwargs: Any other argument of `compress`.

    Returns:
        What `compress` returns.
    """
    warnings.warn(
        "compress_with_scheme() is deprecated; call "
        f"keras_practise.compress(model, data, scheme={scheme!r}, ...).",
        DeprecationWarning,
        stacklevel=2,
    )
    return compress(model, data, scheme=scheme, **kwargs)
