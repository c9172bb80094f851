"""Training display as pix2pix's: visdom windows, the HTML page CHECKPOINTS_DIR/NAME/web/index.html, loss_log.txt
(and metrics_log.txt with --eval_freq). The page shows the losses and metrics over steps as pictures (util.curves).

Visdom is optional: with no server at --display_server/--display_port (or no visdom package) the run
warns once and goes on with the HTML page and the log.
"""

import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from data.image_io import tensor_to_uint8, write_image
from util.curves import chart_row, read_log_curves
from util.fileio import append_text
from util.html import HTMLPage, format_value
from util.visuals import display_image

logger = logging.getLogger("sargen")

VISDOM_TIMEOUT_S = 5


def visdom_server_command(port):
    """The shell command that starts a visdom server on 127.0.0.1:`port` offline (this interpreter, no downloads).

    `python -m visdom.server` first downloads its browser scripts and dies without internet; its run_server.main
    starts the same server without that step.
    """
    return (f"{shlex.quote(sys.executable)} -c \"from visdom.server.run_server import main; main()\" "
            f"-port {int(port)} --hostname 127.0.0.1")


def display_array(image):
    """A CxHxW tensor in [-1, 1] as a 3xHxW uint8 array for visdom (shown as util.visuals.display_image shows it)."""
    array = tensor_to_uint8(display_image(image), value_range=(-1.0, 1.0))
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return array.transpose(2, 0, 1)


class Visualizer:
    """Shows losses and images on visdom, saves them to the training HTML page and appends loss_log.txt."""

    def __init__(self, opt):
        """Open loss_log.txt and, with --display_id > 0, connect to the visdom server."""
        self.opt = opt
        self.name = opt.name
        self.checkpoint_dir = Path(opt.checkpoints_dir) / opt.name
        self.web_dir = self.checkpoint_dir / "web"
        self.image_dir = self.web_dir / "images"
        self.log_path = self.checkpoint_dir / "loss_log.txt"
        self.metrics_log_path = self.checkpoint_dir / "metrics_log.txt"
        self.metrics_log_started = False
        self.use_html = opt.is_train and not opt.no_html
        self.html_steps = self.saved_html_steps()
        self.plot_data = {"X": [], "Y": [], "legend": []}
        self.display_id = opt.display_id
        self.vis = self.connect() if opt.display_id > 0 else None
        append_text(self.log_path, f"================ Training Loss ({time.strftime('%c')}) ================\n")

    def connect(self):
        """A visdom client for the configured server, or None (with one warning) when none answers."""
        server, port = self.opt.display_server, self.opt.display_port
        try:
            import visdom
        except ImportError:
            logger.warning("visdom is not installed: no live display (pip install visdom, or --display_id 0)")
            return None
        logging.getLogger("visdom").setLevel(logging.ERROR)  # its own connection chatter
        try:
            vis = visdom.Visdom(server=server, port=port, env=self.opt.display_env, raise_exceptions=True,
                                use_incoming_socket=False)
            if vis.check_connection(timeout_seconds=VISDOM_TIMEOUT_S):
                return vis
        except (ConnectionError, OSError) as error:
            logger.debug("visdom connection failed: %s", error)
        self.warn_no_server()
        return None

    def warn_no_server(self):
        """Warn once that the visdom server cannot be reached, and stop trying."""
        opt = self.opt
        logger.warning("no visdom server at %s:%d: training goes on without the live display "
                       "(start one with `%s`, or pass --display_id 0)",
                       opt.display_server, opt.display_port, visdom_server_command(opt.display_port))
        self.vis = None

    def send(self, call, *args, **kwargs):
        """Call a visdom method; on a lost connection warn once and stop displaying."""
        if self.vis is None:
            return
        try:
            getattr(self.vis, call)(*args, **kwargs)
        except (ConnectionError, OSError):
            self.warn_no_server()

    def display_current_results(self, visuals, step):
        """Show the current images (an {label: CxHxW tensor in [-1, 1]} dict) in one visdom window."""
        if self.vis is None:
            return
        labels = list(visuals)
        images = [display_array(image) for image in visuals.values()]
        height, width = images[0].shape[1:]
        images = [image if image.shape[1:] == (height, width) else display_array_resized(image, height, width)
                  for image in images]
        self.send("images", np.stack(images), nrow=self.opt.display_ncols, win=str(self.display_id + 1),
                  opts={"title": f"{self.name} images, step {step}: {' '.join(labels)}", "caption": " ".join(labels)})

    def plot_current_losses(self, step, losses):
        """Add the losses of `step` to the visdom loss plot."""
        if self.vis is None:
            return
        if not self.plot_data["legend"]:
            self.plot_data["legend"] = list(losses)
        self.plot_data["X"].append(step)
        self.plot_data["Y"].append([losses[name] for name in self.plot_data["legend"]])
        x = np.array(self.plot_data["X"], dtype=np.float64)
        y = np.array(self.plot_data["Y"], dtype=np.float64)
        self.send("line", X=np.tile(x[:, None], (1, y.shape[1])), Y=y, win=str(self.display_id),
                  opts={"title": f"{self.name} loss over time", "legend": self.plot_data["legend"],
                        "xlabel": "step", "ylabel": "loss"})

    def print_current_losses(self, step, losses, learning_rate, seconds_per_step):
        """Log the losses and append them to loss_log.txt as pix2pix does."""
        values = " ".join(f"{name}: {format_value(value)}" for name, value in losses.items())
        message = f"(step: {step}, lr: {learning_rate:.6g}, time: {seconds_per_step:.3f}) {values}"
        logger.info(message)
        append_text(self.log_path, message + "\n")

    def print_current_metrics(self, step, scores, note=""):
        """Log a training evaluation's scores (and `note`), append them to metrics_log.txt and redraw the page."""
        values = " ".join(f"{name}: {format_value(value)}" for name, value in scores.items())
        logger.info("(step: %d) %s%s", step, values, f" ({note})" if note else "")
        header = "" if self.metrics_log_started else (f"================ Evaluation ({time.strftime('%c')}) "
                                                      f"================\n")
        append_text(self.metrics_log_path, f"{header}(step: {step}) {values}\n")
        self.metrics_log_started = True
        if self.vis is not None and scores:
            curves = read_log_curves(self.metrics_log_path)
            names = [name for name in scores if name in curves]
            for offset, name in enumerate(names):
                steps, values = zip(*curves[name])
                self.send("line", X=np.array(steps, dtype=np.float64), Y=np.array(values, dtype=np.float64),
                          win=f"{self.display_id}_metric_{offset}",
                          opts={"title": f"{self.name} {name} over steps", "xlabel": "step", "ylabel": name})
        if self.use_html:
            self.write_page()

    def saved_html_steps(self):
        """Steps whose images are already in web/images (kept when a run is resumed)."""
        if not self.image_dir.is_dir():
            return []
        steps = {int(path.name[4:].split("_", 1)[0]) for path in self.image_dir.glob("step*_*.png")
                 if path.name[4:].split("_", 1)[0].isdigit()}
        return sorted(steps)

    def save_html_images(self, visuals, step):
        """Save the current images as web/images/stepN_LABEL.png and rewrite web/index.html."""
        if not self.use_html:
            return
        for label, image in visuals.items():
            write_image(display_image(image), self.image_dir / f"step{step:08d}_{label}.png", value_range=(-1.0, 1.0))
        if step not in self.html_steps:
            self.html_steps.append(step)
        self.labels = list(visuals)
        self.write_page()

    def label_order(self, path):
        """Sort key of an image file: its label's position in the current visuals, then its name."""
        label = path.stem.split("_", 1)[1]
        labels = getattr(self, "labels", [])
        return (labels.index(label) if label in labels else len(labels), path.name)

    def write_page(self):
        """Write web/index.html with the saved images, newest step first."""
        page = HTMLPage(self.web_dir, f"Experiment name = {self.name}", refresh=60)
        add_training_curves(page, self.checkpoint_dir)
        for step in sorted(self.html_steps, reverse=True):
            page.add_header(f"step [{step}]")
            files = sorted(self.image_dir.glob(f"step{step:08d}_*.png"), key=self.label_order)
            page.add_images([(f"images/{path.name}", path.stem.split("_", 1)[1]) for path in files],
                            self.opt.display_winsize)
        page.save()
        return page.index_path


def add_training_curves(page, checkpoint_dir):
    """Add the losses (loss_log.txt) and metrics (metrics_log.txt) of a training run over steps as charts."""
    for title, file_name in (("Losses over steps", "loss_log.txt"), ("Metrics over steps", "metrics_log.txt")):
        curves = read_log_curves(Path(checkpoint_dir) / file_name)
        if curves:
            page.add_header(title)
            page.add_element(chart_row(curves))


def display_array_resized(image, height, width):
    """A 3xhxw uint8 array resized (nearest) to height x width, so visdom can show images of mixed sizes."""
    rows = np.arange(height) * image.shape[1] // height
    columns = np.arange(width) * image.shape[2] // width
    return image[:, rows][:, :, columns]
