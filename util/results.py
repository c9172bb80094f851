"""Writing test results: images/NAME_LABEL.png, index.html with a row per image, and loss_log.txt."""

from dataclasses import dataclass, field
from pathlib import Path

from data.image_io import write_image
from util.fileio import write_text_atomic
from util.html import HTMLPage, format_value


@dataclass
class ImageResult:
    """What a model produced for one input image."""

    name: str
    visuals: dict
    scalars: dict = field(default_factory=dict)
    curve: list = field(default_factory=list)


def result_dir(opt):
    """RESULTS_DIR/NAME/PHASE_EPOCH, pix2pix's results layout."""
    return Path(opt.results_dir) / opt.name / f"{opt.phase}_{opt.epoch}"


class ResultsWriter:
    """Saves each ImageResult's visuals as PNG and lists them in one HTML page and one loss log."""

    def __init__(self, web_dir, title, image_width=256, notes=()):
        """Prepare `web_dir`; nothing is written until images are added."""
        self.web_dir = Path(web_dir)
        self.image_dir = self.web_dir / "images"
        self.title = title
        self.image_width = image_width
        self.notes = list(notes)
        self.results = []

    def add(self, result):
        """Save one result's images now; keep its row for the page."""
        files = []
        for label, image in result.visuals.items():
            file_name = f"{result.name}_{label}.png"
            write_image(image, self.image_dir / file_name, value_range=(-1.0, 1.0))
            files.append((f"images/{file_name}", label))
        self.results.append((result, files))

    def save(self):
        """Write index.html and loss_log.txt (atomically) for every result added so far."""
        page = HTMLPage(self.web_dir, self.title)
        for note in self.notes:
            page.add_text(note)
        for result, files in self.results:
            page.add_header(result.name)
            page.add_images(files, self.image_width)
            if result.scalars:
                page.add_table(list(result.scalars), [list(result.scalars.values())])
        page.save()
        write_text_atomic(self.web_dir / "loss_log.txt", self.loss_log())
        return page.index_path

    def loss_log(self):
        """Every result's loss curve and final values as text, one line per logged step."""
        lines = [f"# {note}" for note in self.notes]
        for result, _ in self.results:
            for point in result.curve:
                values = " ".join(f"{key}: {format_value(value)}" for key, value in point.items())
                lines.append(f"(image: {result.name}) {values}")
            if result.scalars:
                values = " ".join(f"{key}: {format_value(value)}" for key, value in result.scalars.items())
                lines.append(f"(image: {result.name}) final {values}")
        return "\n".join(lines) + "\n"
