"""Entry-point helpers: the command-line parser, tqdm-aware logging and the one place where errors become one line."""

import argparse
import logging
import re
import sys

from tqdm import tqdm

from util import distributed
from util.errors import SargenError
from util.fileio import os_error_message

logger = logging.getLogger("sargen")

# A negative number or comma-separated list of numbers (-25,0  -1e-3  -.5,-0.1): argparse takes it for an option.
NEGATIVE_VALUE = re.compile(r"^-\.?\d[\d.eE+-]*(,[+-]?\.?\d[\d.eE+-]*)*$")


def attach_negative_values(argv, takes_no_value=lambda option: False):
    """`argv` with each negative value that follows a --option attached to it: --db_window_B -25,0 becomes
    --db_window_B=-25,0, so both forms parse alike (flags for which `takes_no_value` is true, and `--`, excepted)."""
    attached, index = [], 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            return attached + list(argv[index:])
        following = argv[index + 1] if index + 1 < len(argv) else None
        if (isinstance(token, str) and token.startswith("--") and "=" not in token and isinstance(following, str)
                and NEGATIVE_VALUE.match(following) and not takes_no_value(token)):
            attached.append(f"{token}={following}")
            index += 2
        else:
            attached.append(token)
            index += 1
    return attached


class ArgumentParser(argparse.ArgumentParser):
    """The parser of every sargen command line: argparse's, also taking a negative value after a space
    (`--db_window_B -25,0` as `--db_window_B=-25,0`, `--out_db_window -30,5`), as GDAL's tools do."""

    def parse_known_args(self, args=None, namespace=None):
        """argparse's parse_known_args on the command line with negative values attached to their options."""
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(attach_negative_values(args, self.takes_no_value), namespace)

    def takes_no_value(self, option):
        """Whether `option` is a flag of this parser (store_true, --help, ...), which a value never follows."""
        action = self._option_string_actions.get(option)
        return action is not None and action.nargs == 0


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
    """Run `main()`, turning a SargenError or Ctrl-C into one line on stderr and a non-zero exit; an int that `main`
    returns is the exit code (evaluate.py: 3 when some metrics are unavailable).

    The last resort for errors of the system: an OSError the code did not word itself (a read or a write that
    failed) is one line naming its path and cause, a MemoryError one line too. Under torchrun the process group
    is left at the end, also after an error.
    """
    setup_logging()
    try:
        status = main()
        if isinstance(status, int) and not isinstance(status, bool) and status:
            sys.exit(status)
    except SargenError as error:
        print(f"error: {rank_label()}{one_line_message(error)}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        print(f"error: {rank_label()}{os_error_message(error)}", file=sys.stderr)
        sys.exit(2)
    except MemoryError:
        print(f"error: {rank_label()}out of memory: use smaller images, batches or tiles",
              file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        distributed.teardown()
