"""Run the documented bash commands as a new user would, offline on the CPU, and time each one.

The documentation is README.md and the docs/ pages it links, read in the order it links them. Each ```bash
block is split into commands (continuation lines joined, comments and optional
[--bracketed] parts dropped) and run in order from the repository root, so later commands find what earlier
ones made (example data, checkpoints, results). Adjusted as the docs say offline runs need: a script whose
--help offers --gpu_ids gets --gpu_ids -1, one that offers --vgg_weights gets --vgg_weights random when it
does not choose weights and torchvision's cache lacks the ImageNet VGG files. Skipped, with the reason: commands
for several machines (torchrun --nnodes > 1), servers (visdom), and commands whose input (--dataroot, --img,
--model_path, --checkpoint, --results, --real_dir) does not exist when their turn comes (a user's own files).
The table gives each command as run, its exit code and wall seconds; each command's output is in --log_dir.

    .venv/bin/python benchmarks/readme_times.py --list                       # what would run, adjusted
    .venv/bin/python benchmarks/readme_times.py --only make_dataset          # some commands
    .venv/bin/python benchmarks/readme_times.py --replace "--iteration 100000=--iteration 200" --timeout 3600
"""

import argparse
import glob
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
INPUT_OPTIONS = ("--dataroot", "--img", "--model_path", "--checkpoint", "--results", "--real_dir")
SERVERS = ("visdom.server",)  # commands that serve until stopped
OPTIONAL_PART = re.compile(r"\s*\[[^\]]*\]")  # `[--direction BtoA]`: an optional part, left out
SUMMARY_LINE = re.compile(r"^demo timing:.*$", re.MULTILINE)  # what `make demo` prints of its targets' times
DOCS_LINK = re.compile(r"\]\((docs/[^)#\s]+\.md)(?:#[^)]*)?\)")  # a README link to a docs/ page
VGG_BACKBONES = ("vgg16", "vgg19")


@dataclass
class ReadmeCommand:
    """One command of a documented block: where it is, its words as written, and what was changed or why skipped."""

    line: int
    tokens: list
    source: str = ""
    changes: list = field(default_factory=list)
    skip: str = ""

    @property
    def text(self):
        """The command as it runs."""
        return shlex.join(self.tokens)


def bash_blocks(text):
    """(line number of the first line, lines) of every ```bash block of a markdown text."""
    blocks, current, start = [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if current is None and line.strip() == "```bash":
            current, start = [], number + 1
        elif current is not None and line.strip().startswith("```"):
            blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def block_commands(start, lines):
    """The commands of one block: continuation lines joined, comments and [optional] parts dropped."""
    commands, pending, first = [], "", start
    for number, line in enumerate(lines, start):
        if not pending:
            first = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        tokens = shlex.split(OPTIONAL_PART.sub("", pending + line), comments=True)
        pending = ""
        if tokens:
            commands.append(ReadmeCommand(first, tokens))
    return commands


def readme_commands(readme):
    """Every command of every bash block of markdown file `readme`, in order."""
    return [command for start, lines in bash_blocks(Path(readme).read_text(encoding="utf-8"))
            for command in block_commands(start, lines)]


def documentation_section(text):
    """The README's `## Documentation` section (its map of the docs), or '' when it has none."""
    match = re.search(r"^## Documentation\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


def documented_pages(readme):
    """README file `readme`, then the docs/ pages it links: in its docs map's order, then any others it links."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    pages = [readme]
    for link in DOCS_LINK.findall(documentation_section(text)) + DOCS_LINK.findall(text):
        page = readme.parent / link
        if page not in pages and page.is_file():
            pages.append(page)
    return pages


def documented_commands(readme):
    """Every command of the README and of the docs/ pages it links, in reading order, each with its page."""
    commands = []
    for page in documented_pages(readme):
        for command in readme_commands(page):
            command.source = page.relative_to(Path(readme).parent).as_posix()
            commands.append(command)
    return commands


def option_value(tokens, option):
    """The value of `option` in `tokens` (`--opt V` or `--opt=V`), or None."""
    for index, token in enumerate(tokens):
        if token == option and index + 1 < len(tokens):
            return tokens[index + 1]
        if token.startswith(option + "="):
            return token.split("=", 1)[1]
    return None


def set_option(tokens, option, value):
    """`tokens` with `option` set to `value` (replaced where given, else appended)."""
    for index, token in enumerate(tokens):
        if token == option and index + 1 < len(tokens):
            return [*tokens[:index + 1], value, *tokens[index + 2:]]
        if token.startswith(option + "="):
            return [*tokens[:index], f"{option}={value}", *tokens[index + 1:]]
    return [*tokens, option, value]


def script_of(tokens):
    """(index, path) of the Python script a command runs (also under torchrun), or (None, None)."""
    for index, token in enumerate(tokens):
        if token.endswith(".py"):
            return index, token
    return None, None


class HelpProbe:
    """Which options a script offers for a command's model, from its --help (asked once per script and model)."""

    def __init__(self, repo, python):
        """Remember where and with which interpreter to ask."""
        self.repo, self.python, self.cache = Path(repo), python, {}

    def options(self, tokens):
        """The option strings that the command's script offers (an empty set when it has no script or help)."""
        index, script = script_of(tokens)
        if script is None or not (self.repo / script).is_file():
            return set()
        model = option_value(tokens[index:], "--model")
        key = (script, model)
        if key not in self.cache:
            argv = [self.python, script, *(["--model", model] if model else []), "--help"]
            result = subprocess.run(argv, cwd=self.repo, capture_output=True, text=True, timeout=300)
            offered = re.findall(r"^ {2}(?:-\w+, )?(--\w+)", result.stdout, re.MULTILINE)
            self.cache[key] = set(offered) if result.returncode == 0 else set()
        return self.cache[key]


def imagenet_vgg_cached():
    """Whether torchvision's cache holds the ImageNet weights of both VGG backbones."""
    sys.path.insert(0, str(REPO_ROOT))
    from models.vgg import imagenet_cache_path

    return all(imagenet_cache_path(backbone).is_file() for backbone in VGG_BACKBONES)


def adjust(command, probe, random_vgg):
    """Set --gpu_ids -1 and, where needed, --vgg_weights random, as the docs say offline CPU runs need."""
    if "--help" in command.tokens or "-h" in command.tokens:
        return
    offered = probe.options(command.tokens)
    if "--gpu_ids" in offered and option_value(command.tokens, "--gpu_ids") != "-1":
        command.tokens = set_option(command.tokens, "--gpu_ids", "-1")
        command.changes.append("--gpu_ids -1")
    if random_vgg and "--vgg_weights" in offered and option_value(command.tokens, "--vgg_weights") is None:
        command.tokens = set_option(command.tokens, "--vgg_weights", "random")
        command.changes.append("--vgg_weights random")


def replace_text(command, replacements):
    """Apply the --replace OLD=NEW substitutions to the command's text."""
    text = command.text
    for old, new in replacements:
        if old in text:
            text = text.replace(old, new)
            command.changes.append(f"{old} -> {new}")
    command.tokens = shlex.split(text)


def static_skip_reason(command):
    """Why a command is never run here ('' if it may be): it needs several machines, or it serves until stopped."""
    nodes = option_value(command.tokens, "--nnodes")
    if nodes is not None and nodes != "1":
        return f"needs {nodes} machines"
    if any(server in command.text for server in SERVERS):
        return "a server: runs until stopped"
    return ""


def skip_reason(command, repo):
    """Why the command cannot run here now ('' if it can): several machines, or an input that does not exist."""
    if static_skip_reason(command):
        return static_skip_reason(command)
    _, script = script_of(command.tokens)
    if script is not None and not (Path(repo) / script).is_file():
        return f"no {script}"
    for option in INPUT_OPTIONS:
        value = option_value(command.tokens, option)
        if value is not None and not glob.glob(str(Path(repo) / value)):
            return f"needs {option} {value} (a user's file, or made by a command that did not run)"
    return ""


def run_command(command, repo, log_path, timeout):
    """Run a command through bash with its output in `log_path`; returns (exit code or 'timeout', wall seconds)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {command.text}\n")
        log.flush()
        process = subprocess.Popen(["bash", "-c", command.text], cwd=repo, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)  # the command's own process group (torchrun's ranks too)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            code = "timeout"
    return code, time.perf_counter() - started


def markdown_row(*cells):
    """One row of a markdown table (pipes in cells escaped)."""
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="repository to run in (e.g. a fresh clone)")
    parser.add_argument("--readme", type=Path, default=None,
                        help="README to read, with the docs/ pages it links (default: REPO/README.md)")
    parser.add_argument("--only", default=None, help="run only commands matching this regular expression")
    parser.add_argument("--skip", default=None, help="leave out commands matching this regular expression")
    parser.add_argument("--replace", action="append", default=[], metavar="OLD=NEW",
                        help="substitute text in every command, e.g. '--iteration 100000=--iteration 200' (repeatable)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a command may run before it is stopped")
    parser.add_argument("--log_dir", type=Path, default=None,
                        help="where each command's output goes (default: REPO/results/readme_times)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that answers the scripts' --help")
    parser.add_argument("--list", action="store_true", help="print the commands as they would run, run nothing")
    args = parser.parse_args(argv)
    for text in args.replace:
        if "=" not in text:
            parser.error(f"--replace expects OLD=NEW, got '{text}'")
    args.replacements = [tuple(text.split("=", 1)) for text in args.replace]
    return args


def main(argv=None):
    """Run (or list) the documented commands and print the table."""
    args = parse_args(argv)
    repo = args.repo.resolve()
    readme = args.readme or repo / "README.md"
    log_dir = args.log_dir or repo / "results" / "readme_times"
    probe, random_vgg = HelpProbe(repo, args.python), not imagenet_vgg_cached()
    rows = [markdown_row("where", "command as run", "changes", "exit", "seconds"), markdown_row(*["---"] * 5)]
    print(rows[0] + "\n" + rows[1], flush=True)
    summaries = []
    for number, command in enumerate(documented_commands(readme), 1):
        replace_text(command, args.replacements)
        if (args.only and not re.search(args.only, command.text)) or (args.skip and re.search(args.skip, command.text)):
            continue
        adjust(command, probe, random_vgg)
        command.skip = static_skip_reason(command) if args.list else skip_reason(command, repo)
        if command.skip:
            code, seconds = f"skipped: {command.skip}", ""
        elif args.list:
            code, seconds = "not run (--list)", ""
        else:
            log_path = log_dir / f"{number:02d}_{Path(command.source).stem}_line{command.line}.log"
            code, seconds = run_command(command, repo, log_path, args.timeout)
            seconds = f"{seconds:.1f}"
            summaries += [f"{command.source}:{command.line} {line}" for line in
                          SUMMARY_LINE.findall(log_path.read_text(encoding="utf-8", errors="replace"))]
        rows.append(markdown_row(f"{command.source}:{command.line}", f"`{command.text}`", ", ".join(command.changes),
                                 code, seconds))
        print(rows[-1], flush=True)
    if not args.list:
        for line in summaries:
            print(f"\n{line}", end="")
        print(f"\n\noutputs: {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
