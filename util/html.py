"""The HTML writer: result pages built with dominate (text is escaped), saved atomically."""

from pathlib import Path

import dominate
from dominate import tags

from util.fileio import write_text_atomic


class HTMLPage:
    """An index.html in `web_dir` with headers, image rows and tables; image links are relative."""

    def __init__(self, web_dir, title, refresh=0):
        """Start an empty page titled `title`; `refresh` > 0 reloads it every that many seconds."""
        self.web_dir = Path(web_dir)
        self.document = dominate.document(title=title)
        if refresh > 0:
            with self.document.head:
                tags.meta(http_equiv="refresh", content=str(refresh))
        with self.document:
            tags.h1(title)

    @property
    def index_path(self):
        """Where save() writes the page."""
        return self.web_dir / "index.html"

    def add_header(self, text, level=3):
        """Add a header line."""
        with self.document:
            getattr(tags, f"h{level}")(text)

    def add_text(self, text):
        """Add a paragraph of plain text."""
        with self.document:
            tags.p(text)

    def add_images(self, images, width=256):
        """Add a row of images, each a (path relative to the page, caption) pair, linked to the full file."""
        with self.document:
            with tags.table(border=1, style="table-layout: fixed;"):
                with tags.tr():
                    for path, caption in images:
                        with tags.td(style="word-wrap: break-word;", halign="center", valign="top"):
                            with tags.p():
                                with tags.a(href=str(path)):
                                    tags.img(style=f"width:{width}px", src=str(path))
                                tags.br()
                                tags.span(caption)

    def add_table(self, header, rows):
        """Add a table with a header row and rows of values."""
        with self.document:
            with tags.table(border=1):
                with tags.tr():
                    for name in header:
                        tags.th(str(name))
                for row in rows:
                    with tags.tr():
                        for value in row:
                            tags.td(format_value(value))

    def save(self):
        """Write index.html atomically."""
        write_text_atomic(self.index_path, self.document.render())
        return self.index_path


def format_value(value):
    """A number or text as shown in a page or log."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
