"""`compress_with_scheme()`: the layer-wise schemes end to end, and their report.

tiny set -> views and teacher -> layer by layer: compress, train the inserted
1x1 convs to mimic the next feature map, fold -> a plain Functional model.
"""

import dataclasses
import json
import time

from keras_practise import backend
from keras_practise.distillation import feature_bank
from keras_practise.distillation import trainer
from keras_practise.export import exporter
from keras_practise.graph import flat_graph as graph_lib
from keras_practise.graph import input_size
from keras_practise.graph import surgery
from keras_practise.profiling import macs as macs_lib
from keras_practise.recovery import recipes
from keras_practise.schemes import core
from keras_practise.schemes import decouple
from keras_practise.schemes import filters
from keras_practise.schemes import lowrank
from keras_practise.schemes import sparse
from keras_practise.utils import validation

SCHEMES = ("filters", "decouple", "lowrank", "sparse")
# Recovery of a scheme: PRACTISE's layer-wise adaptors ("layerwise"), then
# optionally whole-network finetuning ("mimic" label-free, "mimic_ce" the
# earlier paper's "PRACTISE + FT"); or the baselines, which train the
# untrained compression as a whole ("ce" = BP, "kd", "fitnet").
METHODS = ("layerwise",) + recipes.WHOLE_METHODS
_LAYERWISE = ("layerwise", "mimic", "mimic_ce")


@dataclasses.dataclass
class SchemeReport:
    """What `compress_with_scheme()` did.

    Attributes:
        scheme: The scheme.
        method: The recovery (`METHODS`).
        layers: Names of the compressed layers, in network order.
        settings: The scheme's arguments.
        params: `(before, after)` parameter counts.
        macs: `(before, after)` multiply-accumulates per image.
        sparsity: Fraction of zero kernel entries in the compressed convs
            (`"sparse"` only, else `None`).
        steps: One `core.StepRecord` per layer (with untrained adaptors
            for the baselines that skip layer-wise training).
        phase_seconds: Wall time per phase.
        finetune_curve: `(step, loss)` pairs of the whole-network training
            (empty for `"layerwise"`).
        exported: The `ExportResult` of `export=` as a dict, or `None`.
    """

    scheme: str
    method: str
    layers: list
    settings: dict
    params: tuple
    macs: tuple
    sparsity: float
    steps: list
    phase_seconds: dict
    finetune_curve: list = dataclasses.field(default_factory=list)
    exported: dict = None

    def table(self):
        """The per-layer table and the totals as text."""
        lines = [f"scheme {self.scheme}, recovery {self.method} {self.settings}"]
        for r in self.steps:
            lines.append(
                f"  {r.layer}: {r.detail} next-map MSE {r.mse_init:.4g} -> "
                f"{r.mse_trained:.4g} (BatchNorm {r.batchnorm}), fold error {r.fold_error:.2g}"
            )
        lines.append(f"params {self.params[0]:,} -> {self.params[1]:,}")
        lines.append(f"MACs {self.macs[0]:,} -> {self.macs[1]:,}")
        if self.finetune_curve:
            lines.append(
                f"whole-network {self.method}: loss {self.finetune_curve[0][1]:.4g} "
                f"-> {self.finetune_curve[-1][1]:.4g}"
            )
        if self.sparsity is not None:
            lines.append(
                f"zeros in the compressed kernels: {100 * self.sparsity:.1f}% "
                "(dense runtimes do not run them faster)"
            )
        if self.exported:
            lines.append(f"exported {exporter.ExportResult(**self.exported)}")
        lines.append(
            "phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.phase_seconds.items())
        )
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def to_dict(self):
        """A JSON-serialisable dict of the report."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def _plan(teacher, scheme, keep, layers, rank, energy, sparsity):
    """Checks the scheme's arguments; returns `(layer names, make_step)`."""
    if scheme == "filters":
        fractions = filters.resolve_keep(teacher, keep, layers)
        return list(fractions), lambda m, n, probe: filters.filter_step(
            m, n, fractions[n]
        )
    candidates = {
        "decouple": decouple.candidates,
        "lowrank": lowrank.candidates,
        "sparse": sparse.candidates,
    }[scheme](teacher)
    chosen = candidates if layers is None else list(layers)
    unknown = [n for n in chosen if n not in candidates]
    if unknown:
        raise ValueError(
            f"Scheme {scheme!r} cannot compress {unknown}. Candidates: {candidates}"
        )
    chosen = [n for n in candidates if n in chosen]
    if scheme == "decouple":
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(
                f"`rank` must be a positive integer for decoupling. Received: rank={rank!r}"
            )
        return chosen, lambda m, n, probe: decouple.decouple_step(m, n, rank)
    if scheme == "lowrank":
        if not 0 < energy <= 1:
            raise ValueError(f"`energy` must be in (0, 1]. Received: energy={energy}")
        if rank is not None and not (
            (isinstance(rank, float) and 0 < rank <= 1)
            or (isinstance(rank, int) and rank >= 1)
        ):
            raise ValueError(
                "`rank` must be a fraction in (0, 1], a positive integer or None. "
                f"Received: rank={rank!r}"
            )
        return chosen, lambda m, n, probe: lowrank.lowrank_step(
            m, n, probe([m.get_layer(n).output])[0], energy, rank
        )
    if not 0 <= sparsity < 1:
        raise ValueError(f"`sparsity` must be in [0, 1). Received: sparsity={sparsity}")
    return chosen, lambda m, n, probe: sparse.sparse_step(m, n, sparsity)


@backend.fused_kernels()
def compress_with_scheme(
    model,
    data,
    scheme="filters",
    keep=0.5,
    layers=None,
    rank=None,
    energy=0.4,
    sparsity=0.9,
    steps=200,
    method="layerwise",
    finetune_steps=500,
    learning_rate=0.01,
    batch_size=None,
    num_samples=None,
    per_class=None,
    seed=0,
    image_size=None,
    augment_views=None,
    preprocess=None,
    data_dir=None,
    verbose=1,
    return_report=False,
    callbacks=None,
    export=None,
):
    """Compresses `model` layer by layer with a scheme, recovered by PRACTISE.

    Every compressed layer gets 1x1 convolutions around it; only those (and
    the BatchNorm between them, in training mode, its statistics then set to
    the data's) train to mimic the teacher's next feature map on the tiny
    set; then they fold away. Labels are not used.

    Args:
        model: A trained Functional or Sequential `keras.Model`; not modified.
        data: The tiny set (anything `compress()` accepts).
        scheme: `"filters"` (keep a fraction of the filters of convs whose
            map only convs read, or of a residual stream), `"decouple"` (KxK conv -> depthwise +
            pointwise), `"lowrank"` (3x3 conv -> 3x3 conv with fewer filters
            + 1x1, by PCA of its responses) or `"sparse"` (magnitude mask).
        keep: `"filters"`: fraction of filters kept, one for all or a dict
            per conv name. Defaults to `0.5`.
        layers: Names of the convs to compress. Defaults to every candidate
            of the scheme (`"filters"`: every map inside the blocks). For
            `"filters"` also residual streams between blocks (the earlier
            paper's Figure 4c/d), named by their first producing conv
            (`filters.prunable_streams`): every conv writing the stream
            shrinks with it.
        rank: `"decouple"`: depthwise filters per input channel (defaults
            to `3`); `"lowrank"`: a fraction of the channels or a number of
            components, instead of `energy`.
        energy: `"lowrank"`: explained-variance ratio the kept components
            must exceed. Defaults to `0.4` (the paper's).
        sparsity: `"sparse"`: fraction of zeros per kernel. Defaults to `0.9`.
        steps: Optimizer steps per layer; `0` folds the untrained
            compression (the "before recovery" model).
        method: The recovery, one of `METHODS`: `"layerwise"` (PRACTISE:
            the per-layer adaptors only, label-free), `"mimic"` /
            `"mimic_ce"` (those, then `finetune_steps` of whole-network
            feature mimicking, without / with labels: "PRACTISE + FT"), or
            a baseline that trains the untrained compression as a whole for
            `finetune_steps`: `"ce"` (cross-entropy, "BP"; labels),
            `"kd"` (Hinton's logit distillation) or `"fitnet"` (feature
            mimicking without adaptors).
        finetune_steps: Steps of the whole-network training (not
            `"layerwise"`).
        learning_rate: SGD learning rate of the per-layer training.
        batch_size: Batch size. Defaults to `min(64, number of views)`.
        num_samples: Images to draw from `data`.
        per_class: Images per class to draw instead.
        seed: Seed of the draw, augmentation and batch order.
        image_size: Input size for models with a dynamic input shape.
        augment_views: Augmented views per image (see `views.prepare_views`).
        preprocess: Callable applied to loaded images.
        data_dir: Folder of prepared tensorflow-datasets datasets.
        verbose: 0 silent, 1 one line per layer, 2 also the report.
        return_report: Also return the `SchemeReport`.
        callbacks: Keras callbacks passed to every layer's training `fit`.
        export: Also export the result for a runtime (a path or a `(format,
            path)` pair, see `keras_practise.export`), checked on the tiny
            set and recorded in the report.

    Returns:
        The compressed Functional `keras.Model`, or `(model, report)`.

    Raises:
        TypeError: If `model` is not a graph model or `keep` has a wrong type.
        ValueError: If `scheme` or `method` is unknown, `method` needs labels
            the data lacks, an argument is out of range, or a layer cannot
            be compressed by the scheme (checked before any training).
        ImportError: If `export` names a runtime that is not installed.

    Example:

    ```python
    small, report = keras_practise.compress(
        model, images, scheme="filters", keep=0.5, return_report=True
    )
    ```
    """
    started = time.perf_counter()
    phases = {}
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown scheme. Expected one of {SCHEMES}. Received: {scheme!r}")
    graph_lib.check_graph_model(model)
    graph_lib.check_channels_last(model)
    if scheme == "decouple" and rank is None:
        rank = 3
    input_shape = graph_lib.input_shape(model)[1:]
    teacher = core.flat_copy(input_size.fixed_size_model(model, image_size))
    names, make_step = _plan(teacher, scheme, keep, layers, rank, energy, sparsity)
    if not names:
        raise ValueError(f"Model {model.name!r} has no layer that scheme {scheme!r} applies to.")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"`steps` must be a non-negative integer. Received: steps={steps!r}")
    if method not in METHODS:
        raise ValueError(
            f"Unknown recovery method for scheme {scheme!r}. Expected one of "
            f"{METHODS}. Received: method={method!r}"
        )
    validation.check_int("finetune_steps", finetune_steps, minimum=1)
    callbacks = trainer.check_callbacks(callbacks)
    export_target = None if export is None else exporter.resolve_target(export)
    config = None
    if steps:
        config = trainer.TrainConfig(
            steps=steps, batch_size=batch_size, learning_rate=learning_rate,
            seed=seed, callbacks=callbacks,
        )
    bank, _ = feature_bank.build_bank(
        teacher, data, num_samples, per_class, seed, image_size, augment_views,
        preprocess, data_dir,
    )
    if method != "layerwise":
        recipes.check_method(method, bank.labels is not None)
    phases["data"] = time.perf_counter() - started
    t = time.perf_counter()
    compressed, records = core.run_steps(
        teacher, names, make_step, bank.views,
        config if method in _LAYERWISE else None, verbose=verbose,
    )
    phases["layers"] = time.perf_counter() - t
    curve = []
    if method != "layerwise":
        t = time.perf_counter()
        curve = recipes.train_whole(compressed, bank, method, trainer.TrainConfig(
            steps=finetune_steps, batch_size=batch_size, seed=seed,
            verbose=verbose, callbacks=callbacks,
        ))
        phases["finetune"] = time.perf_counter() - t
    phases["total"] = time.perf_counter() - started
    report = SchemeReport(
        scheme=scheme,
        method=method,
        layers=names,
        settings={
            "keep": keep, "rank": rank, "energy": energy, "sparsity": sparsity,
            "steps": steps, "learning_rate": learning_rate, "seed": seed,
            "finetune_steps": finetune_steps if method != "layerwise" else None,
        },
        params=(macs_lib.count_params(teacher), macs_lib.count_params(compressed)),
        macs=(macs_lib.count_macs(teacher), macs_lib.count_macs(compressed)),
        sparsity=sparse.sparsity_of(compressed, names) if scheme == "sparse" else None,
        steps=records,
        phase_seconds=phases,
        finetune_curve=curve,
    )
    compressed = surgery.rewrite(compressed, name=model.name, input_shape=input_shape)
    if export_target is not None:
        t = time.perf_counter()
        path, format = export_target
        report.exported = dataclasses.asdict(exporter.export(
            compressed, path, format, sample=bank.views["eval"][:8]
        ))
        phases["export"] = time.perf_counter() - t
    if verbose >= 2:
        print(report.table())
    return (compressed, report) if return_report else compressed
