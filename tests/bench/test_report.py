"""The benchmark table renderer and RESULTS.md writer (no timing is asserted anywhere)."""

from __future__ import annotations

from pathlib import Path

from bench.report import BEGIN, END, Row, generated, render, write_results

ROWS = [
    Row("1 warm latency, in-process", "search p50 ms", "9.1", "≤ 15", True, "n=400"),
    Row("1 warm latency, in-process", "search p99 ms", "40.2", "≤ 3 × p50 = 27.3", False),
    Row("1 reference: rank_bm25 + jieba", "search p50 / p99 ms", "1.2 / 3.4", "(reference)", None, "a | b"),
    Row("3 indexing", "dev hit@5, bf16（默认）", "1.000", "≥ fp32 − 0.01", True),
]


def test_render_is_one_markdown_table_with_a_row_per_figure() -> None:
    lines = render(ROWS).splitlines()
    assert len(lines) == 2 + len(ROWS)
    assert lines[0].split("|")[1].strip() == "section"
    assert set(lines[1]) <= {"|", "-"}
    # every line has the same number of cells; a "|" inside a cell is escaped
    assert {line.replace("\\|", "").count("|") for line in lines} == {7}
    assert "a \\| b" in lines[4]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    assert [c[4] for c in cells] == ["yes", "**no**", "–", "yes"]
    assert cells[0][:4] == ["1 warm latency, in-process", "search p50 ms", "9.1", "≤ 15"]


def test_render_pads_columns_to_the_same_display_width() -> None:
    from bench.report import _width

    lines = render(ROWS).splitlines()
    assert len({_width(line) for line in lines}) == 1  # CJK cells count two columns


def test_write_results_replaces_only_the_generated_block(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    write_results(generated(ROWS[:1], "python -m bench", "test machine", "0.1", "0.2", 60.0), path)
    first = path.read_text(encoding="utf-8")
    assert BEGIN in first and END in first and "## Reading" in first
    assert "Command: `python -m bench`" in first and "9.1" in first
    # The hand-written reading is kept, the table is replaced.
    path.write_text(first.replace("## Reading", "## Reading\n\nMy analysis: the encoder dominates."), encoding="utf-8")
    write_results(generated(ROWS[1:], "python -m bench", "test machine", "0.1", "0.2", 60.0), path)
    second = path.read_text(encoding="utf-8")
    assert "My analysis: the encoder dominates." in second
    assert "| 9.1 " not in second and "40.2" in second
    assert second.count(BEGIN) == 1 and second.count(END) == 1


def test_write_results_keeps_a_file_without_markers(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# Notes written by hand\n", encoding="utf-8")
    write_results(generated(ROWS, "python -m bench", "m", "0", "0", 1.0), path)
    text = path.read_text(encoding="utf-8")
    assert text.index(END) < text.index("# Notes written by hand")
    assert "Targets met: 2, missed: 1." in text
