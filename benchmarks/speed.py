"""Seconds per optimizer step of recoverability and finetuning, and a whole run.

Measures, side by side in one run on the active backend:

* recoverability, ours: the trainable suffix only, on cached teacher
  activations and cached targets (what `keras_practise` does);
* recoverability, naive: the same Keras model trained the way the authors'
  loop trains it, i.e. every step runs the full teacher for the targets and
  the full student forward and backward, every weight but the adaptors
  frozen (their own code is timed with `--authors_repo`);
* finetuning ("mimic", all weights but the classifier) on cached targets,
  and the naive version with a teacher forward per step;
* optionally the wall time of a whole `compress()`;
* with `--overhead`, the fixed cost of scoring one candidate (building its
  student, compiling and tracing, evaluating it) next to its seconds per
  step, on a student of its own and on its stage's switched student
  (traced once for every set): every candidate is scored with
  `--overhead_steps` A, B, then A steps again (the first run pays for the
  teacher's activations at the candidate's cut, shared by later
  candidates); seconds per step = (t_B - t_A) / (B - A), overhead =
  t_A - A * that, with the second t_A; the switched students' one-time
  build and trace is printed apart;
* with `--call_cost`, the fixed cost of a whole `recoverability()` call
  (feature bank, building, tracing, evaluation, retries) on the first
  `--blocks` entry: calls with A, B, A, B steps, fixed cost = the fastest
  A call minus its steps run (retries included) times the seconds per step
  of the fastest calls.

Steady state only: the first `--warmup` steps (tracing, compilation) are not
timed. With `--authors_repo`, the authors' own PyTorch steps (their ResNet-50
and adaptor hooks, see `benchmarks/authors_code.py`) are timed in the same
process, interleaved with ours, on the same images. `--jit_compile true`
compiles our steps (XLA on TensorFlow, `torch.compile` on torch).

Commands (the figures in docs/results.md; fetch the authors' repository
first, e.g. `git clone https://github.com/DoctorKey/Practise /tmp/Practise`):

    KERAS_BACKEND=tensorflow python -m benchmarks.speed --steps 8 --warmup 3 \
        --compress --compress_steps 20
    KERAS_BACKEND=torch python -m benchmarks.speed --steps 6 --warmup 2 \
        --blocks 1.2,3.2 --authors_repo /tmp/Practise [--jit_compile true]

Overhead per candidate (ResNet-20 at 32x32, 6 candidates):

    KERAS_BACKEND=tensorflow python -m benchmarks.speed --overhead \
        --model resnet20 --input_size 32 --batch_size 64

Fixed cost of a `recoverability()` call (ResNet-50 at 128x128, block 3.2):

    KERAS_BACKEND=torch python benchmarks/speed.py --call_cost --blocks 3.2 \
        --overhead_steps 2,12
"""

import time

from absl import app
from absl import flags

from benchmarks import harness

_MODEL = flags.DEFINE_string("model", "resnet50", "resnet50 or resnet20.")
_INPUT_SIZE = flags.DEFINE_integer("input_size", 128, "Input height and width.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 12, "Optimizer steps per measurement.")
_WARMUP = flags.DEFINE_integer("warmup", 4, "Untimed first steps.")
_BLOCKS = flags.DEFINE_list(
    "blocks",
    ["1.2", "2.2", "3.2", "4.2"],
    "Candidates whose recoverability step is timed (one per stage).",
)
_DROP = flags.DEFINE_list("drop", ["1.2", "2.2", "3.2"], "Blocks dropped for finetuning.")
_COMPRESS = flags.DEFINE_boolean(
    "compress", False, "Also time a whole compress() (steps=--compress_steps)."
)
_COMPRESS_STEPS = flags.DEFINE_integer(
    "compress_steps", 20,
    "Adaptor and recovery steps for --compress (with batch --batch_size and "
    "MACs savings); 0 calls compress() with its defaults for everything but drop.",
    lower_bound=0,
)
_COMPRESS_IMAGES = flags.DEFINE_integer(
    "compress_images", 50, "Tiny-set images for --compress.", lower_bound=1
)
_OVERHEAD = flags.DEFINE_boolean(
    "overhead", False,
    "Only measure the fixed cost per recoverability candidate.",
)
_JIT_COMPILE = flags.DEFINE_enum(
    "jit_compile", "auto", ["auto", "true", "false"],
    "Keras' jit_compile of our steps: XLA on TensorFlow, torch.compile on torch.",
)
_FUSED_KERNELS = flags.DEFINE_boolean(
    "fused_kernels", True,
    "Run our Keras steps in keras_practise.backend.fused_kernels(), as the "
    "library does (torch; no effect on the other backends).",
)
_AUTHORS_REPO = flags.DEFINE_string(
    "authors_repo", None,
    "ResNet-50: a checkout of github.com/DoctorKey/Practise, whose PyTorch "
    "training steps are timed beside ours on the same images (any backend: "
    "their code is plain torch).",
)
_CALL_COST = flags.DEFINE_boolean(
    "call_cost", False,
    "Only measure the fixed cost of a whole recoverability() call.",
)
_OVERHEAD_STEPS = flags.DEFINE_list(
    "overhead_steps", ["2", "22"], "The two step counts A, B of --overhead."
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Markdown file for the step table (and the --compress line)."
)
_OVERHEAD_BLOCKS = flags.DEFINE_list(
    "overhead_blocks", None,
    "The candidates --overhead times (labels or names). Defaults to every one.",
)


def _model(name, size):
    import keras

    from keras_practise import models

    if name == "resnet50":
        return keras.applications.ResNet50(
            weights=None, input_shape=(size, size, 3), classes=1000
        )
    if name == "resnet20":
        return models.ResNet20(weights=None, input_shape=(size, size, 3), classes=10)
    raise app.UsageError(f"Unknown --model {name!r}: resnet50 or resnet20.")


def _step_times(steps_fns, steps, warmup):
    """Median seconds of one training step for each `step(i)` callable.

    The callables step in turn, each round starting one further along
    (A B C, B C A, C A B, ...), so all see the same machine load and none
    always follows another; every step is timed up to the end of its device
    work (`backend.synchronize`), so a step that returns while its kernels
    still run is not billed to the next one. The first `warmup` rounds
    (tracing, compilation) are not timed.
    """
    import numpy as np

    from keras_practise import backend

    times = [[] for _ in steps_fns]
    for i in range(steps + warmup):
        for k in range(len(steps_fns)):
            j = (i + k) % len(steps_fns)
            start = time.perf_counter()
            backend.synchronize(steps_fns[j](i))
            if i >= warmup:
                times[j].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def _keras_step(model, make_batch):
    """`step(i)`: one `train_on_batch` on `make_batch(i)` (timed with it)."""
    from keras_practise import backend

    def step(i):
        if not _FUSED_KERNELS.value:
            return model.train_on_batch(*make_batch(i))
        with backend.fused_kernels():
            return model.train_on_batch(*make_batch(i))

    return step


def _compile(model):
    from keras_practise.distillation import optimizer as optimizer_lib
    from keras_practise.distillation import trainer as finetune

    config = finetune.TrainConfig(steps=1000)
    model.compile(
        optimizer=optimizer_lib.make_optimizer(config), loss="mse",
        jit_compile={"auto": "auto", "true": True, "false": False}[_JIT_COMPILE.value],
    )


def measure(model, size, batch_size, steps, warmup, blocks, drop, authors=None):
    """Seconds per step of ours, the naive recipe and the authors' code.

    Returns:
        A list of `(what, ours, naive[, authors])` rows, seconds per step;
        the authors' column with `authors` (an `AuthorsCode`).
    """
    import keras
    import numpy as np

    from keras_practise.data import views as views_lib
    from keras_practise.distillation import adaptors
    from keras_practise.distillation import feature_bank
    from keras_practise.distillation import trainer as finetune
    from keras_practise.graph import blocks as blocks_lib
    from keras_practise.graph import surgery
    from keras_practise.graph import taps

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(batch_size * 2, size, size, 3)).astype("float32")
    bank, _ = feature_bank.build_bank(model, views_lib.TinySetSpec(x, augment_views=1))
    teacher_tap = surgery.rewrite(model, outputs=[bank.tap])
    rows = []

    def batches(inputs, targets_fn):
        def make_batch(i):
            rows_ = np.arange(i * batch_size, (i + 1) * batch_size) % len(inputs)
            return inputs[rows_], targets_fn(rows_)

        return make_batch

    for block in blocks_lib.resolve_blocks(model, blocks):
        sites = adaptors.find_sites(model, [block])
        cut = taps.frozen_prefix_cut(
            model, [s.conv for s in sites] + block.layer_names
        )
        suffix, sites = adaptors.insert_adaptors(
            model, [block], sites, outputs=[bank.tap], start=cut
        )
        names = [s.adaptor_name for s in sites]
        finetune.set_trainable(suffix, "adaptors", names)
        _compile(suffix)
        cached = bank.prefix(cut, "train")
        full, _ = adaptors.insert_adaptors(model, [block], sites, outputs=[bank.tap])
        finetune.set_trainable(full, "adaptors", names)
        _compile(full)
        views = bank.views["train"]
        fns = [
            _keras_step(suffix, batches(cached, lambda r: bank.targets["train"][r])),
            _keras_step(
                full, batches(views, lambda r: teacher_tap.predict_on_batch(views[r]))
            ),
        ]
        if authors is not None:
            fns.append(authors.recoverability_step(block.label, views, batch_size))
        rows.append(
            (f"recoverability {block.name} ({block.label})",
             *_step_times(fns, steps, warmup))
        )

    chosen = blocks_lib.resolve_blocks(model, drop)
    student, sites = adaptors.insert_adaptors(model, chosen)
    finetune.set_trainable(student, "mimic")
    view = keras.Model(student.inputs, taps.feature_tap(student))
    _compile(view)
    views = bank.views["train"]
    naive_student, _ = adaptors.insert_adaptors(model, chosen)
    finetune.set_trainable(naive_student, "mimic")
    naive_view = keras.Model(naive_student.inputs, taps.feature_tap(naive_student))
    _compile(naive_view)
    fns = [
        _keras_step(view, batches(views, lambda r: bank.targets["train"][r])),
        _keras_step(
            naive_view, batches(views, lambda r: teacher_tap.predict_on_batch(views[r]))
        ),
    ]
    if authors is not None:
        fns.append(authors.finetune_step(drop, views, batch_size))
    rows.append((f"finetune mimic, drop {','.join(drop)}", *_step_times(fns, steps, warmup)))
    return rows


def overhead(model, batch_size, step_counts, num_images=50, blocks=None):
    """Seconds of fixed cost and seconds per step of scoring each candidate.

    Each candidate is scored twice over: on a student of its own (built
    and traced for the one set, as the library did before its switched
    students) and on the switched student of its stage
    (`recoverability.student_pool`), reused across candidates; each stage's
    student is built and traced first, and that cost is returned apart.

    Args:
        model: The model whose candidates are scored.
        batch_size: Batch size of the adaptor training.
        step_counts: The two step counts `(A, B)`.
        num_images: Random images of the tiny set (8 views each).
        blocks: Labels or names of the candidates to time; `None` for all.

    Returns:
        A tuple `(rows, builds)`: `rows` are `(block label, own overhead s,
        own s/step, switched overhead s, switched s/step)`; `builds` the
        seconds of each first use of a stage's switched student beyond a
        warm scoring of the same candidate.
    """
    import numpy as np

    from keras_practise.data import views as views_lib
    from keras_practise.distillation import feature_bank
    from keras_practise.distillation import trainer
    from keras_practise.graph import blocks as blocks_lib
    from keras_practise.selection import recoverability

    size = model.input_shape[1]
    images = np.random.default_rng(0).uniform(
        size=(num_images, size, size, 3)
    ).astype("float32")
    bank, _ = feature_bank.build_bank(model, views_lib.TinySetSpec(images, augment_views=8))
    few, many = (int(s) for s in step_counts)
    candidates = (
        blocks_lib.find_blocks(model) if blocks is None
        else blocks_lib.resolve_blocks(model, blocks)
    )
    configs = {s: trainer.TrainConfig(steps=s, batch_size=batch_size) for s in (few, many)}
    pools = {
        s: recoverability.student_pool(model, candidates, bank, c)
        for s, c in configs.items()
    }

    def timed(block, steps, pool):
        start = time.perf_counter()
        recoverability.score_block(model, block, bank, configs[steps], pool)
        return time.perf_counter() - start

    def fixed_and_per_step(block, pool_of):
        # The first run also computes the teacher's activations at the
        # candidate's cut (once per cut, shared): it is not timed.
        seconds = [timed(block, s, pool_of(s)) for s in (few, many, few)]
        per_step = (seconds[1] - seconds[2]) / (many - few)
        return seconds[2] - few * per_step, per_step

    cold = []
    for block in candidates:
        if block.stage not in pools[few].students:
            cold.append((block, timed(block, few, pools[few])))
            timed(block, many, pools[many])
    rows = [
        (b.label, *fixed_and_per_step(b, lambda s: None), *fixed_and_per_step(b, pools.get))
        for b in candidates
    ]
    warm = {label: fixed + few * per_step for label, _, _, fixed, per_step in rows}
    return rows, [seconds - warm[block.label] for block, seconds in cold]


def overhead_table(rows, builds):
    """Formats `overhead`'s rows and builds, with the means."""
    lines = [
        "| candidate | own student: overhead s | s/step | switched student: "
        "overhead s | s/step |",
        "|---|---|---|---|---|",
    ]
    for label, *values in rows:
        lines.append(
            f"| {label} | {values[0]:.2f} | {values[1]:.3f} | {values[2]:.2f} "
            f"| {values[3]:.3f} |"
        )
    means = [sum(r[i] for r in rows) / len(rows) for i in range(1, 5)]
    lines.append(
        f"| mean | {means[0]:.2f} | {means[1]:.3f} | {means[2]:.2f} | {means[3]:.3f} |"
    )
    lines.append(
        f"\nSwitched students built: {len(builds)}, "
        f"{sum(builds) / len(builds):.2f} s each beyond a warm scoring."
    )
    return "\n".join(lines)


def table(rows):
    """Formats `(what, ours, naive[, authors])` rows with the speed-ups."""
    authors = any(len(r) > 3 for r in rows)
    lines = [
        "| step | ours s/step | naive s/step | speed-up |"
        + (" authors' code s/step | speed-up |" if authors else ""),
        "|---|---|---|---|" + ("---|---|" if authors else ""),
    ]

    def line(what, ours, *others):
        cells = [what, f"{ours:.3f}"]
        for other in others:
            cells += [f"{other:.3f}", f"{other / ours:.2f}x"]
        return "| " + " | ".join(cells) + " |"

    lines += [line(*r) for r in rows]
    recoverability = [r for r in rows if r[0].startswith("recoverability")]
    if recoverability:
        means = [
            sum(r[k] for r in recoverability) / len(recoverability)
            for k in range(1, len(recoverability[0]))
        ]
        lines.append(line("recoverability, mean over candidates", *means))
    return "\n".join(lines)


def call_cost(model, batch_size, block, steps):
    """`(seconds per step, fixed seconds, calls)` of `recoverability()`.

    32 uniform images, two views each, MACs savings (no latency timing).
    Steps are counted as run, retries included (a random network's adaptors
    often end above identity and are retried at smaller rates); the cost
    per step and the fixed cost are the line through the fastest call of
    each step count, so `calls` is a list of `(requested, run, seconds)`.
    """
    import keras
    import numpy as np

    import keras_practise

    class StepCounter(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1

    size = model.input_shape[1]
    images = np.random.default_rng(0).uniform(size=(32, size, size, 3))
    calls = []
    for n in [int(n) for n in steps] * 2:
        counter = StepCounter()
        start = time.perf_counter()
        keras_practise.recoverability(
            model, images.astype("float32"), blocks=[block], steps=n,
            batch_size=batch_size, latency="macs", augment_views=2, verbose=0,
            callbacks=[counter],
        )
        calls.append((n, counter.steps, time.perf_counter() - start))
    fastest = {}
    for n, run, seconds in calls:
        if n not in fastest or seconds < fastest[n][1]:
            fastest[n] = (run, seconds)
    (a_run, t_a), (b_run, t_b) = sorted(fastest.values())
    per_step = (t_b - t_a) / (b_run - a_run)
    return per_step, t_a - a_run * per_step, calls


def main(argv):
    del argv
    import keras
    import numpy as np

    import keras_practise
    from keras_practise import backend

    model = _model(_MODEL.value, _INPUT_SIZE.value)
    print(
        f"backend={keras.backend.backend()} device={backend.device_name()} "
        f"model={_MODEL.value} input={_INPUT_SIZE.value} batch={_BATCH_SIZE.value}"
    )
    if _OVERHEAD.value:
        start = time.perf_counter()
        rows, builds = overhead(
            model, _BATCH_SIZE.value, _OVERHEAD_STEPS.value,
            blocks=_OVERHEAD_BLOCKS.value,
        )
        print(overhead_table(rows, builds))
        print(f"wall time {time.perf_counter() - start:.0f} s")
        return
    if _CALL_COST.value:
        per_step, fixed, calls = call_cost(
            model, _BATCH_SIZE.value, _BLOCKS.value[0], _OVERHEAD_STEPS.value
        )
        print("calls (s) " + "; ".join(
            f"{n} steps ({run} run): {seconds:.1f}" for n, run, seconds in calls
        ))
        print(f"seconds per step {per_step:.3f}, fixed cost per call {fixed:.1f} s")
        return
    authors = None
    if _AUTHORS_REPO.value:
        if _MODEL.value != "resnet50":
            raise app.UsageError("--authors_repo needs --model resnet50.")
        from benchmarks import authors_code

        authors = authors_code.AuthorsCode(_AUTHORS_REPO.value, _BATCH_SIZE.value)
    rows = measure(
        model, _INPUT_SIZE.value, _BATCH_SIZE.value, _STEPS.value,
        _WARMUP.value, _BLOCKS.value, _DROP.value, authors,
    )
    steps_table = table(rows)
    print(steps_table)
    lines = [
        f"backend {keras.backend.backend()}, {backend.device_name()}, "
        f"{_MODEL.value} at {_INPUT_SIZE.value} px, batch {_BATCH_SIZE.value}, "
        f"medians of {_STEPS.value} steps after {_WARMUP.value} warm-up steps:",
        "",
        steps_table,
    ]
    if _COMPRESS.value:
        images = np.random.default_rng(0).uniform(
            size=(_COMPRESS_IMAGES.value, _INPUT_SIZE.value, _INPUT_SIZE.value, 3)
        ).astype("float32")
        settings = {} if not _COMPRESS_STEPS.value else dict(
            steps=_COMPRESS_STEPS.value, finetune_steps=_COMPRESS_STEPS.value,
            batch_size=_BATCH_SIZE.value, latency="macs",
        )
        start = time.perf_counter()
        _, report = keras_practise.compress(
            model, images, drop=3, verbose=0, return_report=True, **settings
        )
        total = time.perf_counter() - start
        described = ", ".join(f"{k}={v!r}" for k, v in settings.items()) or "defaults"
        summary = (
            f"compress(drop=3, {described}) from {_COMPRESS_IMAGES.value} images, "
            f"selection {report.selection!r}: {total:.1f} s; "
            + ", ".join(f"{k} {v:.1f} s" for k, v in report.phase_seconds.items())
        )
        print(summary)
        lines += ["", f"A whole `{summary}`."]
    if _OUTPUT.value:
        harness.write_atomically(_OUTPUT.value, "\n".join(lines) + "\n")


if __name__ == "__main__":
    app.run(main)
