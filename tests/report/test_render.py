"""Rendered reports: HTML that parses, embeds every picture and fetches nothing; Markdown tables
that are well formed, with every picture written beside them; text tables for a terminal."""

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from dimctl.report.document import Document, Heading, Picture, Text, ReportOptions, build
from dimctl.report.inputs import PNG_SIGNATURE, collect
from dimctl.report.render import assets_folder, to_text, write
from dimctl.report.tables import Table

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def document(made, sweep):
    inputs = [*made.runs.values(), made.results, made.root / "mine-dim-l", made.root / "rec-dim-l",
              made.root / "nn-dim-l", sweep[0]]
    return build(collect(inputs), ReportOptions(title="test <report> & co"))


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attributes, self.open = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(tag, k, v or "") for k, v in attrs]
        if tag not in ("meta", "img", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()


def test_document_has_tables_pictures_of_every_kind(made, document):
    titles = [t.title for t in document.tables]
    assert any(t.startswith("Table 1") for t in titles) and any(t.startswith("Table 4") for t in titles)
    assert any(t.startswith("Nearest neighbours") for t in titles) and any(t.startswith("Sweep") for t in titles)
    names = [p.name for p in document.pictures]
    assert "accuracy-per-layer-digits" in names
    assert any(n.startswith("ablation-digits") for n in names)
    assert any(n.endswith("curves-report0-dim-l") for n in names) and any(n.endswith("-a1-b1") for n in names)
    # The grids found in run folders are shown enlarged by a whole factor and labelled by what their
    # rows and columns are; the command that drew each one is named, not its artifact's kind.
    for folder, grid, words in (("rec-dim-l", "reconstructions.png", "reconstructions from the frozen features"),
                                ("nn-dim-l", "neighbors.png", "the query, then its 4 nearest")):
        native = Image.open(made.root / folder / grid)
        (shown,) = [p for p in document.pictures if p.name.endswith(f"{folder}-{grid[:-4]}")]
        assert Image.open(io.BytesIO(shown.png)).height >= 2 * native.height and words in shown.caption
    credits = [b.text for b in document.blocks if isinstance(b, Text) and "made by" in b.text]
    assert any("made by `dimctl reconstruct`" in t for t in credits) and not any("decoder`" in t for t in credits)
    assert len(set(names)) == len(names)


def test_html_parses_embeds_every_picture_and_references_nothing_outside(document, tmp_path):
    (path,) = write(document, tmp_path / "report.html")
    text = path.read_text()
    parser = Collector()
    parser.feed(text)
    parser.close()
    assert parser.open == [] and "script" not in parser.tags and "link" not in parser.tags
    sources = [v for tag, k, v in parser.attributes if tag == "img" and k == "src"]
    assert len(sources) == len(document.pictures)
    embedded = []
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        embedded.append(base64.b64decode(src.split(",", 1)[1], validate=True))
    assert all(png.startswith(PNG_SIGNATURE) for png in embedded)
    assert sorted(embedded) == sorted(p.png for p in document.pictures)
    for tag, key, value in parser.attributes:
        if key in ("src", "href", "action", "srcset", "poster", "data"):
            assert value.startswith("data:"), (tag, key, value[:40])
    assert not re.search(r"(?i)(https?:)?//[a-z0-9]", re.sub(r'src="data:[^"]*"', "", text))
    assert "<title>test &lt;report&gt; &amp; co</title>" in text  # text is escaped
    assert "default-src 'none'" in text
    assert "`" not in re.sub(r'src="data:[^"]*"', "", text)  # code spans are set as code


def test_code_spans_in_headings_and_titles_are_set_as_code(tmp_path):
    doc = Document("t")
    doc.add(Heading("Made by `dimctl mine`", 3))
    doc.add(Table("Results of `dimctl ndm`", ["a"], [["1"]], [True], main=False))
    text = write(doc, tmp_path / "r.html")[0].read_text()
    assert "<h3>Made by <code>dimctl mine</code></h3>" in text
    assert "<summary>Results of <code>dimctl ndm</code></summary>" in text
    assert "<caption>Results of <code>dimctl ndm</code></caption>" in text and "`" not in text
    assert "<summary>Results of <code>dimctl ndm</code></summary>" in write(doc, tmp_path / "r.md")[0].read_text()


def _cells(line: str) -> list[str]:
    assert line.startswith("| ") and line.endswith(" |") or line.startswith("|---") or line.startswith("|--"), line
    return re.split(r"(?<!\\)\|", line.strip()[1:-1])


def test_markdown_tables_are_well_formed_and_pictures_are_files(document, tmp_path):
    path, *pictures = write(document, tmp_path / "report.md")
    text = path.read_text()
    blocks = [b for b in text.split("\n\n") if b.lstrip().startswith("|") or "\n|" in b]
    tables = [b[b.index("|"):].split("\n</details>")[0].strip() for b in blocks]
    assert len(tables) == len(document.tables)
    for block, table in zip(tables, document.tables):
        lines = block.splitlines()
        widths = {len(_cells(line)) for line in lines}
        assert widths == {len(table.header)}, (table.title, widths)
        assert re.fullmatch(r"\|(-{3}:?\|)+", lines[1]), lines[1]
        assert len(lines) == 2 + len(table.rows)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == len(document.pictures)
    for link in links:
        assert (tmp_path / link).read_bytes().startswith(PNG_SIGNATURE)
    assert sorted(pictures) == sorted(tmp_path / link for link in links)


def test_markdown_escapes_pipes_and_removes_stale_pictures(tmp_path):
    from dimctl.report.document import Document

    doc = Document("t")
    doc.add(Table("odd", ["a|b", "n"], [["x|y", "1"]], [False, True]))
    doc.add(Picture(PNG_SIGNATURE + b"x", "one", "one"))
    (assets := assets_folder(tmp_path / "r.md")).mkdir()
    (assets / "old.png").write_bytes(b"old")
    write(doc, tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "| a\\|b | n |" in text and "| x\\|y | 1 |" in text
    assert sorted(p.name for p in assets.iterdir()) == ["one.png"]


def test_text_output_aligns_the_results_tables_only(document):
    text = to_text(document)
    assert text.startswith("Table 1 — classification accuracy (%), digits\n")
    assert "Configuration of" not in text and "Training of" not in text
    header, rule = text.splitlines()[1:3]
    assert len(header) == len(rule) and set(rule) <= {"-", " "}


def test_picture_names_stay_unique(tmp_path):
    from dimctl.report.document import Document

    doc = Document("t")
    for _ in range(3):
        doc.add(Picture(PNG_SIGNATURE, "Same name!", "c"))
    assert [p.name for p in doc.pictures] == ["same-name", "same-name-2", "same-name-3"]


def test_grids_are_enlarged_with_whole_pixels_and_refuse_the_wrong_shape():
    from dimctl.report.plots import labelled_grid

    # A 2 × 3 grid of 4-pixel cells, each its own colour (labels are drawn in greys), with 2-pixel gaps.
    cells = np.full((2 + 2 * 6, 2 + 3 * 6, 3), 128, np.uint8)
    colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200), (200, 200, 10), (10, 200, 200), (200, 10, 200)]
    for k, colour in enumerate(colours):
        r, c = divmod(k, 3)
        cells[2 + 6 * r:6 + 6 * r, 2 + 6 * c:6 + 6 * c] = colour
    buffer = io.BytesIO()
    Image.fromarray(cells, "RGB").save(buffer, format="PNG")
    shown = np.asarray(Image.open(io.BytesIO(labelled_grid(buffer.getvalue(), 2, 3, ["a", "b"], ["x", "y", "z"]))))
    scale = 640 // cells.shape[1]
    for colour in colours:  # nearest-neighbour: every cell is scale² copies of its pixels, nothing blurred
        assert (shown[..., :3] == colour).all(axis=-1).sum() == 16 * scale ** 2, colour
    with pytest.raises(ValueError, match="not a grid of 5×3"):
        labelled_grid(buffer.getvalue(), 5, 3)
