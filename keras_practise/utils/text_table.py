"""Plain-text tables for reports printed to a terminal or a log."""


def format_table(rows, right_aligned=(), rules_after=()):
    """Formats rows of cells as columns separated by two spaces.

    Args:
        rows: A list of equal-length sequences; the first is the header.
            Cells are converted with `str`.
        right_aligned: Indices of the columns to right-align (numbers);
            the others are left-aligned.
        rules_after: Indices of the rows to follow with a dashed rule.

    Returns:
        The table as one string, a line per row.

    Example:

    ```python
    print(format_table([("block", "mse"), ("conv2_block2", "0.31")],
                       right_aligned=(1,), rules_after=(0,)))
    ```
    """
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(width) if column in right_aligned else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if index in rules_after:
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    return "\n".join(lines)
