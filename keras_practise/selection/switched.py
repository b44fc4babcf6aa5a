"""One compiled student for many sets of dropped blocks.

Scoring trains adaptors for many sets of dropped blocks: every candidate
alone, then (greedy choice) each remaining candidate with the blocks chosen
so far. Building a student per set and tracing its train step cost about 3 s
per set on TensorFlow for a ResNet-20 on this project's CPU, more than 25
training steps. A `SwitchedStudent` is built once for a stretch of the
network: every candidate in it sits behind a switch that keeps or drops it,
and every adaptor any of them needs behind a switch that makes it the
identity. A set is scored by setting the switches, resetting the adaptors
to the identity and restarting the optimizer; Keras traces the train step
once (`trainer.CompiledStep`).

A switched student starts at the cut of its first candidate, so a set behind
it also runs the frozen layers in between (forward only), and the blocks it
drops still run forward. `StudentPool` bounds that by building one student
per stage: a set is trained on the student of the stage of its first
block. That pays where the fixed cost dominates: short runs on this CPU
(`MAX_STEPS`), and presumably a GPU, where steps are cheap (not measured:
no GPU was lent when this was written); at the default 200 steps on a CPU a
student per set is faster.
"""

import dataclasses

import keras
import numpy as np

from keras_practise import backend
from keras_practise.distillation import adaptors as adaptors_lib
from keras_practise.distillation import memory as memory_lib
from keras_practise.distillation import trainer
from keras_practise.graph import surgery

# Up to this many steps per set, scoring uses switched students. They trade
# a fixed cost per set (building and tracing a student) for a dearer step
# (the frozen layers between the stage's start and the set's own cut, the
# dropped blocks' forward pass, switched-off adaptors). On this project's
# CPU (ResNet-20, docs/results.md "One compiled student per stage") the
# fixed cost per set fell 2.61 -> 0.35 s on TensorFlow, 1.65 -> 0.38 s on
# JAX and 0.48 -> 0.25 s on torch while a step rose 0.146 -> 0.171,
# 0.143 -> 0.255 and 0.112 -> 0.138 s: at 10 steps JAX and torch come out
# even and TensorFlow twice as fast; beyond, JAX and torch lose.
MAX_STEPS = 10


class _BlockSwitch(keras.layers.Layer):
    """Passes a block's output when on, its input (the block dropped) when off."""

    def build(self, input_shape):
        self.on = self.add_weight(
            shape=(), initializer="ones", trainable=False, name="on"
        )

    def call(self, inputs):
        block_input, block_output = inputs
        return keras.ops.where(self.on > 0.5, block_output, block_input)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


class _SwitchedAdaptor(keras.layers.Layer):
    """A bias-free 1x1 adaptor that is exactly the identity when off.

    When off its kernel is not used, so it gets no gradient.
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def build(self, input_shape):
        self.identity = np.eye(self.channels, dtype="float32")[None, None]
        self.kernel = self.add_weight(
            shape=self.identity.shape,
            initializer=keras.initializers.Constant(self.identity),
            name="kernel",
        )
        self.on = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="on"
        )

    def call(self, x):
        return backend.switched_conv(
            x, keras.ops.cast(self.kernel, x.dtype), self.on > 0.5
        )

    def compute_output_shape(self, input_shape):
        return input_shape


def pays_off(config):
    """Whether adaptor trainings of `config` use switched students.

    They do for runs of at most `MAX_STEPS` steps on a backend that traces
    its train step (`backend.traces_train_step`): torch has no trace to
    share.
    """
    return config.steps <= MAX_STEPS and backend.traces_train_step()


class SwitchedStudent:
    """The adaptor student of every set of `blocks` behind one cut.

    Args:
        model: The original model (not modified).
        blocks: The candidate `Block`s it can drop, in network order.
        sites: The `adaptors.Site`s of those blocks (each block's sites
            found alone), any iterable.
        start: The tensor of `model` it starts from (the cut of the first
            of `blocks`).
        tap: The tensor of `model` it outputs (the feature map to mimic).
        config: The `trainer.TrainConfig` of every adaptor training.
        samples: The number of training views of every training.
        adaptors: Optional dict `(conv, side) -> adaptor layer` shared
            with other students: the adaptors it needs are taken from it,
            or made and added to it.

    Attributes:
        model: The student, a Functional `keras.Model` from `start` to `tap`.
        start: As given.
        compiled: Its `trainer.CompiledStep` (mean squared error).
    """

    def __init__(self, model, blocks, sites, start, tap, config, samples, adaptors=None):
        self.start = start
        self._blocks = list(blocks)
        self._sites = {(site.conv, site.side): site for site in sites}
        self._switches = {b.name: _BlockSwitch(name=f"{b.name}_switch") for b in blocks}
        shared = {} if adaptors is None else adaptors
        for key, site in self._sites.items():
            if key not in shared:
                shared[key] = _SwitchedAdaptor(site.channels, name=site.adaptor_name)
        self._adaptors = {key: shared[key] for key in self._sites}
        before = {c: a for (c, side), a in self._adaptors.items() if side == "before"}
        after = {c: a for (c, side), a in self._adaptors.items() if side == "after"}
        self.model = surgery.rewrite(
            model,
            before=before,
            after=after,
            gates={
                b: (lambda x, y, switch=self._switches[b.name]: switch([x, y]))
                for b in self._blocks
            },
            start=start,
            outputs=[tap],
        )
        # Every adaptor trains in the one traced step; switched off, an
        # adaptor gets no gradient.
        trainer.set_trainable(
            self.model, "adaptors", [s.adaptor_name for s in self._sites.values()]
        )
        self.compiled = trainer.CompiledStep(self.model, "mse", config, samples)

    def covers(self, blocks, sites):
        """Whether this student can drop `blocks` with adaptors at `sites`."""
        names = {b.name for b in self._blocks}
        return all(b.name in names for b in blocks) and all(
            (s.conv, s.side) in self._sites for s in sites
        )

    def switch(self, blocks, sites):
        """Drops `blocks` and turns on identity adaptors at `sites`.

        Every other candidate is kept and every other adaptor is off.
        """
        dropped = {b.name for b in blocks}
        for name, switch in self._switches.items():
            switch.on.assign(0.0 if name in dropped else 1.0)
        active = {(s.conv, s.side) for s in sites}
        for key, adaptor in self._adaptors.items():
            adaptor.kernel.assign(adaptor.identity)
            adaptor.on.assign(1.0 if key in active else 0.0)


class StudentPool:
    """Switched students of `candidates`, one per stage, built when needed.

    The students share their adaptor layers (the student of an early stage
    holds every adaptor of the later ones), but each compiled step keeps
    optimizer state for all of its adaptors as long as the pool lives:
    0.93 GiB for the four students of ResNet-50. `held_bytes` reserves
    that up front, and `config` is the given one with its
    `activation_memory` reduced by it: train every set scored beside the
    pool with it.

    Args:
        model: The original model.
        candidates: The candidate `Block`s, in network order.
        bank: The `feature_bank.FeatureBank` whose tap the students output.
        config: The `trainer.TrainConfig` of every adaptor training.
        cut_of: Callable `block -> tensor of model`: where the student of
            `block` dropped alone starts.

    Attributes:
        students: The `SwitchedStudent`s built so far, by stage.
        held_bytes: Memory the students' adaptors and optimizer state may
            take once every stage has one.
        config: `config`, its `activation_memory` less `held_bytes`.
    """

    def __init__(self, model, candidates, bank, config, cut_of):
        self._model = model
        self._candidates = list(candidates)
        self._bank = bank
        self._cut_of = cut_of
        self._adaptors = {}
        # Each candidate's sites, found once: a search walks the whole graph.
        self._sites = [adaptors_lib.find_sites(model, [b]) for b in self._candidates]
        self.students = {}
        self.held_bytes = self._state_bytes()
        memory = config.activation_memory
        self.config = dataclasses.replace(
            config,
            activation_memory=None if memory is None else max(0, memory - self.held_bytes),
        )

    def _state_bytes(self):
        # Adaptor parameters of each candidate; a stage's student has those of
        # its candidates and every later one.
        params = [
            {(s.conv, s.side): s.channels**2 for s in sites} for sites in self._sites
        ]
        unique, per_student = {}, 0
        for stage in dict.fromkeys(b.stage for b in self._candidates):
            begin = next(i for i, b in enumerate(self._candidates) if b.stage == stage)
            sites = {key: n for later in params[begin:] for key, n in later.items()}
            unique.update(sites)
            per_student += sum(sites.values())
        return 4 * sum(unique.values()) + memory_lib.STATE_BYTES_PER_PARAM * per_student

    def student(self, blocks, sites):
        """The student that trains `blocks` dropped together, or `None`.

        `None` when a block is not a candidate or the set needs an adaptor
        that no candidate alone needs.
        """
        order = {b.name: i for i, b in enumerate(self._candidates)}
        if not blocks or any(b.name not in order for b in blocks):
            return None
        stage = self._candidates[min(order[b.name] for b in blocks)].stage
        if stage not in self.students:
            begin = next(
                i for i, b in enumerate(self._candidates) if b.stage == stage
            )
            self.students[stage] = SwitchedStudent(
                self._model, self._candidates[begin:],
                [s for sites in self._sites[begin:] for s in sites],
                self._cut_of(self._candidates[begin]), self._bank.tap,
                self.config, len(self._bank.views["train"]), self._adaptors,
            )
        student = self.students[stage]
        return student if student.covers(blocks, sites) else None
