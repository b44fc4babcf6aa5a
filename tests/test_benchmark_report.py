"""`benchmarks/report.py`: the headline tables of docs/results.md in place."""

import pathlib

import pytest

from benchmarks import report

_RESULTS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "results.md"


def test_every_table_has_its_markers_once_in_results():
    text = _RESULTS.read_text()
    for name in report.TABLES:
        start, end = report.markers(name)
        assert text.count(start) == 1 and text.count(end) == 1, name
        assert text.index(start) < text.index(end)


def test_replace_section_rewrites_only_between_the_markers():
    start, end = report.markers("fewshot_50")
    text = f"before\n{start}\nold table\n{end}\nafter\n"
    new = report.replace_section(text, "fewshot_50", "| a |\n|---|\n| 1 |\n")
    assert new == f"before\n{start}\n| a |\n|---|\n| 1 |\n{end}\nafter\n"
    # Idempotent on its own output.
    assert report.replace_section(new, "fewshot_50", "| a |\n|---|\n| 1 |") == new


@pytest.mark.parametrize(
    "text", ["no markers", "<!-- /report:fewshot_50 -->\n<!-- report:fewshot_50 -->\n"]
)
def test_missing_or_reversed_markers_are_a_value_error(text):
    with pytest.raises(ValueError, match="report:fewshot_50"):
        report.replace_section(text, "fewshot_50", "table")


def test_command_line_names_the_backend_and_every_flag():
    line = report.command_line("fewshot_50")
    assert line.startswith("KERAS_BACKEND=tensorflow python -m benchmarks.fewshot ")
    assert "--seeds=0,1,2" in line and "--output" not in line


def test_demote_headings_moves_headings_below_the_page_but_not_code():
    text = "# Title\n\n## Model\n| a |\n```shell\n# a comment\n```\n##### deep\ntext # not\n"
    assert report.demote_headings(text) == (
        "#### Title\n\n##### Model\n| a |\n```shell\n# a comment\n```\n"
        "###### deep\ntext # not\n"
    )


def test_headline_tables_are_the_default_and_known():
    assert set(report.HEADLINE) <= set(report.TABLES)
    for name in report.TABLES:
        backend, module, args = report.TABLES[name]
        assert backend in ("tensorflow", "torch", "jax"), name
        assert module.startswith("benchmarks.") and not any(
            a.startswith("--output") for a in args
        ), name
