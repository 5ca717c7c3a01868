"""A Document as Markdown (pictures as files beside it), self-contained HTML (pictures as data URIs)
or plain text (the results tables only)."""

import base64
import dataclasses
import html
import re
from pathlib import Path
from urllib.parse import quote

from dimctl.errors import UsageError
from dimctl.io.atomic import atomic_folder, atomic_path, check_folder_target, owned_names, write_bytes, write_text
from dimctl.report.document import Document, Heading, Picture, Text
from dimctl.report.tables import Table
from dimctl.text import one_line

FORMATS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".txt": "text"}
CODE = re.compile(r"`([^`]+)`")
_is_asset = owned_names(r"[^/]+\.png")  # a report's NAME_files/: pictures, this version's or an earlier one's


def format_of(path: str) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UsageError(f"-o {path}: name a .md, .html or .txt file (or - for the text tables on stdout)")
    return fmt


def assets_folder(markdown_path: Path) -> Path:
    """Where a Markdown report's pictures go: REPORT_files/ beside REPORT.md."""
    return markdown_path.with_name(f"{markdown_path.stem}_files")


def check_target(path: str) -> None:
    """Refuse, before any work, a name of no known format, and a Markdown report whose
    REPORT_files/ holds files the report did not write (it is replaced whole)."""
    if format_of(path) == "markdown":
        check_folder_target(assets_folder(Path(path)), _is_asset, f"-o {path}: ")


# --- Markdown -----------------------------------------------------------------------------------

# What starts inline markup in some renderer: emphasis, links and images, escapes. A backtick is an
# entity, not \`: an escaped backtick beside a code span's own is read differently by different
# renderers (CommonMark, Python-Markdown), and that disagreement is how a name opens live HTML.
_MD_PUNCTUATION = re.compile(r"[\\`*_\[\]!#]")


def _md_literal(text: str) -> str:
    """Text that every Markdown renderer shows as the same characters: no markup, no HTML (a run
    folder named <img onerror=…> or [x](javascript:…) is a name, not a picture or a link), no
    control characters (dimctl/text.py)."""
    return _MD_PUNCTUATION.sub(lambda m: "&#96;" if m.group() == "`" else "\\" + m.group(),
                               html.escape(one_line(text), quote=False))


def _md_text(text: str, in_html: bool = False) -> str:
    """Text for Markdown whose only markup is the code spans dimctl writes (`dimctl probe`, a
    folder's path): everything else is literal (``_md_literal``). A code span holds no backtick
    (CODE), so it ends where dimctl's does whatever the name inside holds, and inside it nothing
    is markup or HTML. ``in_html``: text inside a <details> block, which some renderers (Python-
    Markdown) pass through as raw HTML, code spans included: there code is HTML too, escaped."""
    parts = CODE.split(text)  # text, code, text, code, ..., text
    code = (lambda p: f"<code>{html.escape(one_line(p))}</code>") if in_html else (lambda p: f"`{one_line(p)}`")
    return "".join(code(p) if i % 2 else _md_literal(p) for i, p in enumerate(parts))


def _md_cell(text: str) -> str:
    # A cell is data (a run's or layer's name), never markup: no code spans, as in the HTML table.
    return _md_literal(text.strip()).replace("|", "\\|") or " "


def markdown_table(table: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in table.header) + " |",
             "|" + "|".join("---:" if n else "---" for n in table.numeric) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def to_markdown(doc: Document, assets: str) -> str:
    """Markdown that GitHub renders; pictures are linked as ``assets/NAME.png``."""
    parts = [f"# {_md_text(doc.title)}"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {_md_text(block.text)}")
        elif isinstance(block, Text):
            parts.append(_md_text(block.text))
        elif isinstance(block, Table):
            body = f"**{_md_text(block.title)}**\n\n{markdown_table(block)}"
            body += "".join(f"\n\n{_md_text(note)}" for note in block.notes)
            if not block.main:  # run details fold away
                notes = "".join(f"{_md_text(note, in_html=True)}\n\n" for note in block.notes)
                body = (f"<details><summary>{_html_text(one_line(block.title))}</summary>\n\n{markdown_table(block)}\n\n"
                        f"{notes}</details>")
            parts.append(body)
        elif isinstance(block, Picture):
            caption = _md_text(block.caption)
            parts.append(f"![{caption.replace(']', ')')}]({quote(assets)}/{block.name}.png)\n\n*{caption}*")
    return "\n\n".join(parts) + "\n"


# --- HTML ---------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 75rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: .25rem 0; }
figure { margin: 1rem 0; } figure img { max-width: 100%; }
figcaption, p.note { color: #555; font-size: .85rem; }
code { background: #f4f4f4; padding: 0 .2rem; }
"""


def _html_text(text: str) -> str:
    return CODE.sub(r"<code>\1</code>", html.escape(text))


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    rows = "".join(
        "<tr>" + "".join(f'<td class="num">{html.escape(c)}</td>' if n else f"<td>{html.escape(c)}</td>"
                         for c, n in zip(row, table.numeric)) + "</tr>\n"
        for row in table.rows)
    out = (f"<table>\n<caption>{_html_text(table.title)}</caption>\n<thead><tr>{head}</tr></thead>\n"
           f"<tbody>\n{rows}</tbody>\n</table>\n")
    out += "".join(f'<p class="note">{_html_text(n)}</p>\n' for n in table.notes)
    if not table.main:
        out = f"<details><summary>{_html_text(table.title)}</summary>\n{out}</details>\n"
    return out


def to_html(doc: Document) -> str:
    """One self-contained file: inline style, pictures as data URIs, no scripts, nothing fetched."""
    body = []
    for block in doc.blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_html_text(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            body.append(f"<p>{_html_text(block.text)}</p>")
        elif isinstance(block, Table):
            body.append(html_table(block))
        elif isinstance(block, Picture):
            data = base64.b64encode(block.png).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}">'
                        f"<figcaption>{_html_text(block.caption)}</figcaption></figure>")
    # The policy makes the browser refuse anything but the embedded pictures and the inline style.
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n"
            f"<title>{html.escape(doc.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(doc.title)}</h1>\n" + "\n".join(body) + "\n</body>\n</html>\n")


# --- plain text ---------------------------------------------------------------------------------

def text_table(table: Table) -> str:
    # `report -o -` writes to a terminal: a name's escape sequence must not reach it (dimctl/text.py).
    table = dataclasses.replace(table, title=one_line(table.title), header=[one_line(h) for h in table.header],
                                rows=[[one_line(c) for c in row] for row in table.rows],
                                notes=[one_line(n) for n in table.notes])
    widths = [max(len(h), *(len(r[i]) for r in table.rows)) if table.rows else len(h) for i, h in enumerate(table.header)]

    def line(cells):
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, table.numeric)).rstrip()

    lines = [table.title, line(table.header), line(["-" * w for w in widths]), *map(line, table.rows)]
    return "\n".join(lines + table.notes)


def to_text(doc: Document) -> str:
    """The results tables, aligned for a terminal; no pictures, no run details."""
    tables = [t for t in doc.tables if t.main]
    return "\n\n".join(text_table(t) for t in tables) + "\n" if tables else "no result tables\n"


# --- files --------------------------------------------------------------------------------------

def write(doc: Document, path: Path) -> list[Path]:
    """Write the report in the format its suffix names; return every file written (pictures too)."""
    fmt = format_of(str(path))
    if fmt == "html":
        write_text(path, to_html(doc))
        return [path]
    if fmt == "text":
        write_text(path, to_text(doc))
        return [path]
    return [path, *_write_markdown(doc, path)]


def _write_markdown(doc: Document, path: Path) -> list[Path]:
    """The pictures' folder replaced whole (no picture of an earlier version stays), put in place
    before the .md that links to it, which is complete on disk by then: a failure anywhere leaves
    the old .md and folder as they were, and a reader of the .md never finds a picture missing."""
    assets = assets_folder(path)
    text = to_markdown(doc, assets.name)
    with atomic_path(path) as markdown:
        markdown.write_bytes(text.encode())
        if doc.pictures or assets.exists():  # with no pictures now, an old folder's are replaced by none
            with atomic_folder(assets, _is_asset) as folder:
                for picture in doc.pictures:
                    write_bytes(folder / f"{picture.name}.png", picture.png)
    return [assets / f"{p.name}.png" for p in doc.pictures]
