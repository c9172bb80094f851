"""The HTML writer: result pages built with dominate (text is escaped), saved atomically.

HTMLPage writes a whole index.html. HTMLSection is a marked block written into an existing page (e.g.
evaluate.py's metrics in a results page), replacing the block of the same name if the page already has one.
"""

import re
from pathlib import Path, PurePath
from urllib.parse import quote

import dominate
from dominate import tags

from util.errors import SargenError
from util.fileio import write_text_atomic
from util.versions import software_text

IMAGE_GAP = 4  # pixels between the images of a row
MIN_IMAGE_WIDTH = 128  # a row's images shrink to no less than this (or their --display_winsize) before wrapping


class HTMLContent:
    """Headers, text, links, image rows and tables added to `self.container` (a dominate element)."""

    container = None

    def add_header(self, text, level=3):
        """Add a header line."""
        with self.container:
            getattr(tags, f"h{level}")(text)

    def add_text(self, text):
        """Add a paragraph of plain text."""
        with self.container:
            tags.p(text)

    def add_links(self, links):
        """Add a paragraph of links, each a (path relative to the page, text) pair, separated by ' | '."""
        with self.container:
            with tags.p():
                for index, (path, text) in enumerate(links):
                    if index:
                        tags.span(" | ")
                    tags.a(text, href=file_url(path))

    def add_images(self, images, width=256):
        """Add a row of images, each a (path relative to the page, caption) pair, linked to the full file.

        Each image is `width` pixels wide (--display_winsize) where the window has room; in a narrower window the
        row scales its images down to half that width (at least MIN_IMAGE_WIDTH), then wraps, so it never runs off
        the page: U-GAT-IT's seven 256 px panels fit a 1,400 px window side by side.
        """
        smallest = min(width, max(MIN_IMAGE_WIDTH, width // 2))
        with self.container:
            with tags.div(style=f"display:flex; flex-wrap:wrap; gap:{IMAGE_GAP}px; align-items:flex-start;"):
                for path, caption in images:
                    with tags.figure(style=f"margin:0; flex:0 1 {width}px; min-width:{smallest}px; "
                                           f"border:1px solid #999; text-align:center; overflow-wrap:anywhere;"):
                        with tags.a(href=file_url(path)):
                            tags.img(style="width:100%; display:block;", src=file_url(path))
                        tags.figcaption(caption)

    def add_image_grid(self, rows, width=128, column_labels=None, row_labels=None):
        """Add a table of labelled images: `rows` of cells, each a (path relative to the page, caption) pair or
        None (an empty cell); a caption's lines are shown one under the other; optional labels head the columns
        and start the rows."""
        with self.container:
            with tags.table(border=1, style="border-collapse: collapse; text-align: center;"):
                if column_labels is not None:
                    with tags.tr():
                        if row_labels is not None:
                            tags.th("")
                        for label in column_labels:
                            tags.th(label)
                for index, cells in enumerate(rows):
                    with tags.tr():
                        if row_labels is not None:
                            tags.th(row_labels[index])
                        for cell in cells:
                            with tags.td(valign="top", style=f"width:{width}px; font-size: small;"):
                                if cell is None:
                                    continue
                                path, caption = cell
                                with tags.a(href=file_url(path)):
                                    tags.img(style=f"width:{width}px", src=file_url(path))
                                for line in str(caption).split("\n"):
                                    tags.br()
                                    tags.span(line)

    def add_element(self, element):
        """Add a dominate element built elsewhere (e.g. util.curves' charts)."""
        self.container.add(element)

    def add_table(self, header, rows):
        """Add a table with a header row and rows of values."""
        with self.container:
            with tags.table(border=1):
                with tags.tr():
                    for name in header:
                        tags.th(str(name))
                for row in rows:
                    with tags.tr():
                        for value in row:
                            tags.td(format_value(value))


class HTMLPage(HTMLContent):
    """An index.html in `web_dir` with headers, image rows and tables; image links are relative."""

    def __init__(self, web_dir, title, refresh=0):
        """Start an empty page titled `title`; `refresh` > 0 reloads it every that many seconds."""
        self.web_dir = Path(web_dir)
        self.document = dominate.document(title=title)
        self.container = self.document
        if refresh > 0:
            with self.document.head:
                tags.meta(http_equiv="refresh", content=str(refresh))
        with self.document:
            tags.h1(title)

    @property
    def index_path(self):
        """Where save() writes the page."""
        return self.web_dir / "index.html"

    def save(self):
        """Write index.html atomically, with the software versions (util.versions) as its last line."""
        footer = tags.p(f"made with {software_text()}", cls="sargen-software").render()
        text = self.document.render()
        end = text.rindex("</body>")
        write_text_atomic(self.index_path, f"{text[:end]}{footer}\n{text[end:]}")
        return self.index_path


class HTMLSection(HTMLContent):
    """A block named `name`, between HTML comments, that save_into() puts into an existing page."""

    def __init__(self, name):
        """Start an empty block; `name` (letters, digits, '-', '_') marks it in the page."""
        if not re.fullmatch(r"[\w-]+", name):
            raise ValueError(f"section name must be letters, digits, '-' or '_', got {name!r}")
        self.name = name
        self.container = tags.div(id=f"sargen-{name}")

    def markers(self):
        """The comments that open and close the block in a page."""
        return f"<!-- sargen section {self.name}: begin -->", f"<!-- sargen section {self.name}: end -->"

    def render(self):
        """The block's HTML, between its markers."""
        begin, end = self.markers()
        return f"{begin}\n{self.container.render()}\n{end}\n"

    def save_into(self, page_path):
        """Put the block into the page at `page_path` (after its h1 title), replacing an earlier one; atomic."""
        page_path = Path(page_path)
        try:
            text = page_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise SargenError(f"cannot read the page {page_path}: {error}") from None
        begin, end = self.markers()
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end) + r"\n?", "", text, flags=re.DOTALL)
        anchor = re.search(r"</h1>\s*", text) or re.search(r"</body>", text)
        if anchor is None:
            raise SargenError(f"{page_path} has no <body>: is it an HTML page? (delete it to write a new one)")
        position = anchor.end() if anchor.group().startswith("</h1>") else anchor.start()
        write_text_atomic(page_path, text[:position] + self.render() + text[position:])
        return page_path


def file_url(path):
    """A file path relative to the page as a relative URL: '/'-separated, each name percent-encoded ('#', '?', '%')."""
    return "/".join(quote(part, safe="") for part in PurePath(path).parts)


def format_value(value):
    """A number or text as shown in a page or log."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
