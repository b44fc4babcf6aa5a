"""The droppable blocks of a model, found on the copy that is worked on.

`compress()` and `recoverability()` both start here: a size-agnostic model
is worked on through a fixed-size copy (MACs, latency and training graphs
need concrete shapes), so its blocks are found, and the user's choice of
blocks resolved, on that copy.
"""

from keras_practise.graph import blocks as blocks_lib
from keras_practise.graph import flat_graph
from keras_practise.graph import input_size


def require_blocks(model):
    """Returns `find_blocks(model)`, raising if there is none.

    Args:
        model: A Functional or Sequential `keras.Model`.

    Returns:
        The droppable `Block`s, in network order (at least one).

    Raises:
        TypeError: If `model` is not a Functional or Sequential model.
        ValueError: If the model has no droppable block or computes
            channels first.
    """
    flat_graph.check_graph_model(model)
    flat_graph.check_channels_last(model)
    candidates = blocks_lib.find_blocks(model)
    if not candidates:
        raise ValueError(blocks_lib.no_blocks_reason(model))
    return candidates


def working_copy(model, image_size=None, blocks=None):
    """The model to work on, its candidate blocks and the user's chosen ones.

    Args:
        model: The user's model (not modified).
        image_size: `(height, width)` for a model with a dynamic input size.
        blocks: Optional blocks chosen by the user (names, labels or
            `Block`s of `model`).

    Returns:
        A tuple `(teacher, candidates, chosen)`: `model` itself or its
        fixed-size copy, that model's droppable blocks, and the user's blocks
        resolved on it (`None` when `blocks` is `None`).

    Raises:
        ValueError: If the model has no droppable block, a chosen block is
            unknown, or a dynamic input size comes without `image_size`.
    """
    candidates = require_blocks(model)
    chosen = None
    if blocks is not None:
        chosen = blocks_lib.resolve_blocks(model, blocks, candidates)
        if not chosen:
            raise ValueError(f"No blocks to drop. Received: blocks={blocks!r}")
    teacher = input_size.fixed_size_model(model, image_size)
    if teacher is not model:
        candidates = blocks_lib.find_blocks(teacher)
        if chosen is not None:
            chosen = blocks_lib.resolve_blocks(
                teacher, [b.name for b in chosen], candidates
            )
    return teacher, candidates, chosen
