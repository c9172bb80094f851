"""Entry-point helpers: tqdm-aware logging and the one place where errors become one line."""

import logging
import sys

from tqdm import tqdm

from util import distributed
from util.errors import SargenError

logger = logging.getLogger("sargen")


class TqdmHandler(logging.Handler):
    """A logging handler that prints through tqdm so progress bars stay intact."""

    def emit(self, record):
        """Write one formatted record above any active progress bar."""
        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(level=logging.INFO):
    """Route the project's log messages through tqdm, once."""
    if not logger.handlers:
        handler = TqdmHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)


def progress(iterable=None, **kwargs):
    """A tqdm progress bar with the project's defaults (hidden on ranks other than 0)."""
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("disable", not distributed.is_main())
    return tqdm(iterable, **kwargs)


def one_line_message(error):
    """The user-facing line of an error, also when a DataLoader worker wrapped it in a traceback."""
    last_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    prefix = f"{type(error).__module__}.{type(error).__name__}: "
    return last_line[len(prefix):] if last_line.startswith(prefix) else last_line


def rank_label():
    """'[rank N] ' under torchrun with several ranks, to tell their messages apart; '' in a single process."""
    return f"[rank {distributed.rank()}] " if distributed.world_size() > 1 else ""


def run_main(main):
    """Run `main()`, turning a SargenError or Ctrl-C into one line on stderr and a non-zero exit.

    Under torchrun the process group is left at the end, also after an error.
    """
    setup_logging()
    try:
        main()
    except SargenError as error:
        print(f"error: {rank_label()}{one_line_message(error)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        distributed.teardown()
