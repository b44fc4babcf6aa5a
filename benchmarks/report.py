r"""Re-runs the headline tables of docs/results.md and writes them in place.

Each headline table lives in docs/results.md between two markers,
`<!-- report:NAME -->` and `<!-- /report:NAME -->`. This binary runs each
table's benchmark command (`TABLES`) in a child process, which writes its
markdown to a temporary file, and replaces what stands between the markers
with a line naming the command, the commit, the date and the machine,
followed by that markdown (its headings moved below the page's `###`
level). A table whose command fails keeps its old text and the binary
exits non-zero; the file is rewritten atomically once per table, so an
interrupted run leaves every table whole.

On the 2-core development CPU the few-shot and data-source tables
(`HEADLINE`, the default) take about 3 hours (the commit line of each
table gives its minutes); the latency tables want an otherwise idle
machine:

    python -m benchmarks.report
    python -m benchmarks.report --tables latency_tensorflow,latency_torch

    python -m benchmarks.report --tables fewshot_50 --dry_run
"""

import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from benchmarks import harness

# Table name -> (backend, benchmark module, its flags). Each command writes
# its markdown to the file given as `--output`.
TABLES = {
    "fewshot_50": (
        "tensorflow", "benchmarks.fewshot",
        ["--sizes=50", "--seeds=0,1,2", "--drop=3", "--steps=60",
         "--finetune_steps=200"],
    ),
    "fewshot_recipes": (
        "tensorflow", "benchmarks.fewshot",
        ["--sizes=50", "--seeds=0", "--drop=3", "--finetune_steps=200",
         "--methods=bp,mir,mimic_ce,stagewise"],
    ),
    "fewshot_held_out": (
        "tensorflow", "benchmarks.fewshot",
        ["--sizes=50", "--seeds=0,1,2", "--drop=3", "--steps=60",
         "--finetune_steps=200", "--methods=mir,practise",
         "--validation_split=0.2"],
    ),
    "data_sources_50": (
        "tensorflow", "benchmarks.data_sources",
        ["--sizes=50", "--finetune_steps=200", "--synthesis_steps=100"],
    ),
    # The paper's latency tables (ResNet-34/50, VGG-16, MobileNetV2 at
    # 224 px, batch 8), and the earlier paper's Table 1 (layer-wise schemes
    # beside block drops), each on Keras-on-TensorFlow and Keras-on-torch.
    **{
        f"{table}_{backend}": (backend, f"benchmarks.{table}", args)
        for table, args in (
            ("latency", ["--device=cpu", "--batch_size=8", "--runs=15", "--warmup=3"]),
            ("schemes", ["--device=cpu", "--batch_size=4", "--runs=20", "--warmup=3"]),
        )
        for backend in ("tensorflow", "torch")
    },
    # Batch 1: Keras with its own threads, the exported runtimes on one.
    **{
        f"latency_{runtime}": (
            "tensorflow", "benchmarks.latency",
            ["--device=cpu", "--models=resnet34,mobilenet_v2", "--batch_size=1",
             "--runs=10", "--warmup=2", f"--runtime={runtime}"]
            + ([] if runtime == "keras" else ["--threads=1"]),
        )
        for runtime in ("keras", "onnxruntime", "litert", "openvino")
    },
    # Does the ranking of single blocks change between runtimes?
    "runtime_ranking": (
        "tensorflow", "benchmarks.runtime_ranking",
        ["--device=cpu", "--threads=1", "--runs=40", "--warmup=3"],
    ),
    "training_speed": (
        "tensorflow", "benchmarks.speed",
        ["--steps=8", "--warmup=3", "--compress", "--compress_steps=20"],
    ),
    # The CVPR paper's Figure 1: every scheme at its measured latency cut.
    "scheme_accuracy": (
        "tensorflow", "benchmarks.scheme_accuracy",
        ["--sizes=50", "--seeds=0",
         "--variants=blocks-1,blocks-2,blocks-3,filters-0.75,filters-0.5,"
         "filters-0.25,streams-0.5,decouple-3,lowrank-0.95,sparse-0.5",
         "--plot=docs/figures/scheme_accuracy.png"],
    ),
    # More of that benchmark (docs/results.md says what each measures).
    "scheme_baselines": (
        "tensorflow", "benchmarks.scheme_accuracy",
        ["--sizes=50", "--seeds=0", "--variants=blocks-2,filters-0.75,filters-0.5",
         "--methods=practise,bp,kd,fitnet,practise_ft"],
    ),
    "scheme_baselines_layer": (
        "tensorflow", "benchmarks.scheme_accuracy",
        ["--sizes=50", "--seeds=0", "--variants=decouple-3,lowrank-0.95,sparse-0.5",
         "--methods=practise,bp,kd,fitnet,practise_ft"],
    ),
    "scheme_streams": (
        "tensorflow", "benchmarks.scheme_accuracy",
        ["--sizes=50", "--seeds=0",
         "--variants=streams-0.75,streams-0.5,blocks-2,filters-0.5",
         "--methods=practise,practise_ft,fitnet"],
    ),
    "scheme_seeds_50": (
        "tensorflow", "benchmarks.scheme_accuracy",
        ["--sizes=50", "--seeds=0,1,2", "--variants=blocks-2,filters-0.5,streams-0.5"],
    ),
    "scheme_seeds_500": (
        "tensorflow", "benchmarks.scheme_accuracy",
        ["--sizes=500", "--seeds=0,1,2",
         "--variants=blocks-3,filters-0.75,streams-0.75,decouple-3,lowrank-0.95,"
         "sparse-0.5"],
    ),
    "scheme_torch": (
        "torch", "benchmarks.scheme_accuracy",
        ["--sizes=50", "--seeds=0",
         "--variants=blocks-2,filters-0.5,streams-0.75,lowrank-0.95"],
    ),
    "scheme_vgg": (
        "tensorflow", "benchmarks.scheme_accuracy",
        ["--teacher=benchmarks/selection_cache/models/vgg_e15_n20000_s0.keras",
         "--sizes=50", "--seeds=0",
         "--variants=blocks-1,blocks-2,filters-0.75,filters-0.5",
         "--methods=practise,practise_ft"],
    ),
}

# The default of `--tables`: the few-shot and data-source tables.
HEADLINE = ["fewshot_50", "fewshot_recipes", "fewshot_held_out", "data_sources_50"]

_TABLES = flags.DEFINE_list("tables", HEADLINE, "Tables to re-run.")
_RESULTS = flags.DEFINE_string(
    "results", os.path.join("docs", "results.md"), "The results file."
)
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands only.")


def command_line(name):
    """The shell command that regenerates table `name` (without --output)."""
    backend, module, args = TABLES[name]
    return " ".join(
        [f"KERAS_BACKEND={backend}", "python", "-m", module, *map(shlex.quote, args)]
    )


def markers(name):
    """The opening and closing markers of table `name`."""
    return f"<!-- report:{name} -->", f"<!-- /report:{name} -->"


def replace_section(text, name, body):
    """`text` with what stands between `name`'s markers replaced by `body`.

    Raises:
        ValueError: If the markers are missing or out of order.
    """
    start, end = markers(name)
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise ValueError(
            f"docs/results.md must hold {start} ... {end} once. Received: "
            f"{len(pattern.findall(text))} matches"
        )
    return pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text)


def demote_headings(markdown, levels=3):
    """`markdown` with every ATX heading `levels` deeper (at most `######`),
    so a benchmark's own document sits below the page's sections."""
    def deeper(match):
        return "#" * min(6, len(match.group(1)) + levels) + " "

    lines, fenced = [], False
    for line in markdown.splitlines():
        fenced ^= line.lstrip().startswith("```")
        lines.append(line if fenced else re.sub(r"^(#{1,6}) ", deeper, line))
    return "\n".join(lines) + ("\n" if markdown.endswith("\n") else "")


def machine():
    """One line on the machine: CPU count and model, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            models = [line.split(":", 1)[1].strip() for line in file
                      if line.startswith("model name")]
        cpu = models[0] if models else cpu
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()}, no GPU used"


def commit():
    """The short commit hash, marked when the working tree has changes
    outside docs/ (where the report itself writes tables and figures)."""
    def git(*args):
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", ".", ":(exclude)docs")
    return head + (" with uncommitted changes" if changed else "")


def run_table(name, log):
    """Runs table `name`'s benchmark; returns its markdown section text."""
    backend, module, args = TABLES[name]
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "table.md")
        env = dict(os.environ, KERAS_BACKEND=backend)
        started = time.perf_counter()
        with open(os.path.join(folder, "log.txt"), "w") as log_file:
            result = subprocess.run(
                [sys.executable, "-m", module, *args, f"--output={output}"],
                env=env, stdout=log_file, stderr=subprocess.STDOUT, check=False,
            )
        seconds = time.perf_counter() - started
        if result.returncode != 0 or not os.path.exists(output):
            with open(os.path.join(folder, "log.txt")) as log_file:
                tail = log_file.read()[-3000:]
            raise RuntimeError(f"{name} failed (exit {result.returncode}):\n{tail}")
        with open(output) as file:
            # The temporary file is no part of the command to rerun.
            table = file.read().replace(f" --output={output}", "")
    log(f"{name}: {seconds:.0f} s")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"Regenerated by `python -m benchmarks.report --tables {name}`, which "
        f"ran `{command_line(name)}`; commit {commit()}; {stamp}; {machine()}; "
        f"{seconds / 60:.0f} minutes."
    )
    return header + "\n\n" + demote_headings(table)


def main(argv):
    del argv
    unknown = sorted(set(_TABLES.value) - set(TABLES))
    if unknown:
        raise app.UsageError(f"Unknown tables {unknown}. Expected some of {list(TABLES)}")
    started = time.perf_counter()

    def log(text):
        print(f"[{time.perf_counter() - started:6.0f}s] {text}", flush=True)

    if _DRY_RUN.value:
        for name in _TABLES.value:
            print(f"{name}: {command_line(name)}")
        return
    with open(_RESULTS.value) as file:
        text = file.read()
    for name in _TABLES.value:
        replace_section(text, name, "")  # Missing markers fail before any run.
    failed = []
    for name in _TABLES.value:
        try:
            section = run_table(name, log)
        except RuntimeError as error:
            log(str(error))
            failed.append(name)
            continue
        with open(_RESULTS.value) as file:
            text = replace_section(file.read(), name, section)
        harness.write_atomically(_RESULTS.value, text)
        log(f"{name}: written to {_RESULTS.value}")
    if failed:
        sys.exit(f"Tables that failed (their old text kept): {failed}")


if __name__ == "__main__":
    app.run(main)
