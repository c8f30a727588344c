"""A tiny report document model, rendered to Markdown and to self-contained HTML."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Paragraph:
    text: str  # plain text; `backticks` become code spans


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    file: str  # relative to the run directory, e.g. "report/training.png"
    alt: str


@dataclass(frozen=True)
class Preformatted:
    label: str
    text: str


Block = Paragraph | Table | Image | Preformatted


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...] = field(default_factory=tuple)


def not_recorded(title: str, reason: str) -> Section:
    """The section that stands in for one whose inputs the run did not record."""
    return Section(title, (Paragraph(f"Not recorded: {reason}"),))


def render_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        parts.extend(_markdown_block(b) for b in section.blocks)
    return "\n\n".join(parts) + "\n"


def _markdown_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Image):
        return f"![{block.alt}]({block.file})"
    if isinstance(block, Preformatted):
        longest = max((len(m) for m in re.findall(r"`+", block.text)), default=0)
        fence = "`" * max(3, longest + 1)
        return f"{block.label}\n\n{fence}text\n{block.text}\n{fence}"
    lines = [_md_row(block.header), "|" + "---|" * len(block.header)]
    lines.extend(_md_row(row) for row in block.rows)
    return "\n".join(lines)


def _md_row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 0.7em; white-space: pre-wrap; border: 1px solid #e3e3e3; }
code { background: #f1f1f1; padding: 0 0.2em; }
"""


def render_html(title: str, sections: list[Section], run_dir: Path) -> str:
    """One self-contained page: PNGs are embedded as base64 data URIs."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body.extend(_html_block(b, run_dir) for b in section.blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _html_block(block: Block, run_dir: Path) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Image):
        data = base64.b64encode((run_dir / block.file).read_bytes()).decode("ascii")
        return f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">'
    if isinstance(block, Preformatted):
        return f"<p>{_inline(block.label)}</p>\n<pre>{html.escape(block.text)}</pre>"
    head = "".join(f"<th>{_inline(c)}</th>" for c in block.header)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
