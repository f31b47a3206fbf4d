"""Text of HTML, Markdown and plain-text documents.

HTML is read with the standard library's tokenizing parser, which never loads a DTD, never
expands an entity other than HTML's fixed named and numeric references (each a character or two,
so the text is never longer than the file), and never fetches anything. A document that declares
its own entities (an XML-style `<!DOCTYPE ... [<!ENTITY ...>]>`, the 'billion laughs' attack) is
refused. Headings `h1`-`h6` make the section path; paragraphs, list items, table rows, `pre`
and other block elements become blocks; scripts, styles and templates are skipped.

Markdown: ATX (`#`) and setext (underlined) headings make the section path, outside fenced code;
blank lines separate blocks; YAML front matter is skipped. Plain text: blank lines separate
blocks, with no sections.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from tuneforge.data.documents.limits import Deadline, DocumentLimits
from tuneforge.data.documents.model import Block, Collector
from tuneforge.data.limits import DataFileError

FEED_CHARS = 1 << 20
_ENTITY_DECLARATION = re.compile(r"<!ENTITY", re.IGNORECASE)
_SKIP = frozenset({"script", "style", "template", "noscript", "head", "svg", "math", "iframe"})
_BLOCK = frozenset(
    {
        "p", "div", "li", "tr", "pre", "blockquote", "section", "article", "header", "footer",
        "main", "aside", "nav", "dt", "dd", "figcaption", "caption", "table", "ul", "ol", "dl",
        "form", "fieldset", "address", "details", "summary", "hr", "body", "html", "title",
    }
)  # fmt: skip
_HEAD_CONTENT = frozenset(
    {"title", "meta", "link", "style", "script", "base", "noscript", "template"}
)
_CELL = frozenset({"td", "th"})
_HEADING = re.compile(r"^h([1-6])$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def read_html(
    text: str, name: str, limits: DocumentLimits, deadline: Deadline | None = None
) -> list[Block]:
    if _ENTITY_DECLARATION.search(text):
        raise DataFileError(
            f'"{name}" declares its own entities (<!ENTITY ...> in a DOCTYPE), which can expand '
            "a small file into gigabytes; HTML never needs them. Remove the DOCTYPE's entity "
            "declarations and upload it again."
        )
    parser = _HtmlText(name, limits)
    for start in range(0, len(text), FEED_CHARS):  # the parser keeps an unfinished tag for later
        if deadline is not None:
            deadline.check(name)
        parser.feed(text[start : start + FEED_CHARS])
    parser.close()
    parser.flush()
    return parser.out.blocks


class _HtmlText(HTMLParser):
    def __init__(self, name: str, limits: DocumentLimits) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Collector(name, limits)
        self.path: list[tuple[int, str]] = []
        self.parts: list[str] = []
        self.skipping: list[str] = []
        self.heading: int | None = None
        self.title: list[str] = []
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping == ["head"] and tag not in _HEAD_CONTENT:
            self.skipping.clear()  # the head's end tag is optional: the body has begun
        if self.skipping or tag in _SKIP:
            if tag in _SKIP:
                self.skipping.append(tag)
            return
        if (match := _HEADING.match(tag)) is not None:
            self.flush()
            self.heading = int(match.group(1))
        elif tag in _BLOCK:
            self.flush()
        elif tag in _CELL and self.parts:
            self.parts.append(" | ")
        elif tag == "br":
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" and not self.skipping:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if _HEADING.match(tag) or tag in _BLOCK:
            self.flush()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)

    def flush(self) -> None:
        raw = "".join(self.parts)
        self.parts = []
        text = (
            raw.strip("\n")
            if self.heading is None and "\n" in raw.strip()
            else " ".join(raw.split())
        )
        level, self.heading = self.heading, None
        if level is not None and text:
            while self.path and self.path[-1][0] >= level:
                self.path.pop()
            self.path.append((level, " ".join(text.split())))
        self.out.add(None, tuple(t for _, t in self.path), text, level is not None)


def read_markdown(text: str, name: str, limits: DocumentLimits) -> list[Block]:
    out = Collector(name, limits)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[0].strip() == "---":  # YAML front matter
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is not None:
            lines = lines[end + 1 :]
    path: list[tuple[int, str]] = []
    paragraph: list[str] = []
    fence: str | None = None

    def section() -> tuple[str, ...]:
        return tuple(t for _, t in path)

    def flush() -> None:
        out.add(None, section(), "\n".join(paragraph), False)
        paragraph.clear()

    def heading(level: int, title: str) -> None:
        flush()
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        out.add(None, section(), title, True)

    for line in lines:
        if fence is not None:
            paragraph.append(line)
            if line.strip().startswith(fence):
                fence = None
                flush()
            continue
        if match := _FENCE.match(line):
            flush()
            fence = match.group(1)[0] * 3
            paragraph.append(line)
        elif (match := _ATX.match(line)) and (match.group(2) or "").strip():
            heading(len(match.group(1)), (match.group(2) or "").strip())
        elif (match := _SETEXT.match(line)) and len(paragraph) == 1 and paragraph[0].strip():
            title = paragraph.pop().strip()
            heading(1 if match.group(1)[0] == "=" else 2, title)
        elif not line.strip():
            flush()
        else:
            paragraph.append(line)
    flush()
    return out.blocks


def read_text(text: str, name: str, limits: DocumentLimits) -> list[Block]:
    out = Collector(name, limits)
    for paragraph in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        out.add(None, (), paragraph, False)
    return out.blocks
