"""benchmarks/readme_times.py: README commands found, adjusted for offline CPU runs, skipped with reasons."""

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("readme_times", REPO_ROOT / "benchmarks" / "readme_times.py")
readme_times = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(readme_times)

MARKDOWN = """Intro
```bash
# a comment line
.venv/bin/python train.py --model ugatit --dataroot data --name n --light \\
    --img_size 128 --gpu_ids 0    # trailing comment
.venv/bin/python test.py --model ugatit --dataroot data [--direction BtoA] [--epoch 5000]
```
```
not bash: ignored
```
```bash
.venv/bin/torchrun --nnodes 2 --nproc_per_node 8 train.py --model ugatit --dataroot /data/x
.venv/bin/python app.py --model_path model.pt --img 'scenes/*.tif'
```
"""


class FakeProbe:
    """Answers which options a script offers without running it."""

    def options(self, tokens):
        return {"--gpu_ids", "--vgg_weights"} if "train.py" in tokens else set()


def commands(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(MARKDOWN)
    return readme_times.readme_commands(readme)


def test_commands_are_joined_stripped_of_comments_and_optional_parts(tmp_path):
    found = commands(tmp_path)
    assert [command.line for command in found] == [4, 6, 12, 13]
    assert found[0].tokens[-4:] == ["--img_size", "128", "--gpu_ids", "0"]
    assert found[1].text == ".venv/bin/python test.py --model ugatit --dataroot data"
    assert found[3].tokens[-1] == "scenes/*.tif"


def test_offline_adjustments_and_skip_reasons(tmp_path):
    train, test, multi_node, app = commands(tmp_path)
    readme_times.adjust(train, FakeProbe(), random_vgg=True)
    assert readme_times.option_value(train.tokens, "--gpu_ids") == "-1" and train.tokens.count("--gpu_ids") == 1
    assert readme_times.option_value(train.tokens, "--vgg_weights") == "random"
    readme_times.adjust(test, FakeProbe(), random_vgg=True)
    assert test.changes == []
    (tmp_path / "train.py").write_text("")
    (tmp_path / "app.py").write_text("")
    assert readme_times.skip_reason(train, tmp_path).startswith("needs --dataroot data")
    (tmp_path / "data").mkdir()
    assert readme_times.skip_reason(train, tmp_path) == ""
    assert readme_times.skip_reason(multi_node, tmp_path) == "needs 2 machines"
    assert readme_times.skip_reason(app, tmp_path).startswith("needs --img scenes/*.tif")
    server = readme_times.ReadmeCommand(1, [".venv/bin/python", "-c", "from visdom.server.run_server import main"])
    assert readme_times.skip_reason(server, tmp_path) == "a server: runs until stopped"
    readme_times.replace_text(train, [("--img_size 128", "--img_size 64")])
    assert readme_times.option_value(train.tokens, "--img_size") == "64"


def test_a_command_is_run_timed_and_stopped_at_its_timeout(tmp_path):
    fast = readme_times.ReadmeCommand(1, [sys.executable, "-c", "print('done')"])
    code, seconds = readme_times.run_command(fast, tmp_path, tmp_path / "fast.log", timeout=60)
    assert code == 0 and seconds > 0 and "done" in (tmp_path / "fast.log").read_text()
    slow = readme_times.ReadmeCommand(2, ["sleep", "30"])
    code, seconds = readme_times.run_command(slow, tmp_path, tmp_path / "slow.log", timeout=0.5)
    assert code == "timeout" and seconds < 20


def test_the_readme_yields_its_commands():
    commands = readme_times.documented_commands(REPO_ROOT / "README.md")
    texts = [command.text for command in commands]
    assert any("train.py --model ugatit" in text and "--iteration" in text for text in texts)  # joined lines
    assert any(text.endswith("datasets/make_dataset.py x2ka") for text in texts)
    assert not any("[" in text or "#" in text for text in texts)
    sources = {command.source for command in commands}
    assert {"README.md", "docs/data.md", "docs/eo2sar.md", "docs/evaluation.md"} <= sources


def test_docs_pages_are_read_in_the_order_of_the_readme_docs_map(tmp_path):
    (tmp_path / "docs").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "docs" / f"{name}.md").write_text(f"```bash\necho {name}\n```\n")
    readme = tmp_path / "README.md"
    readme.write_text("See [c](docs/c.md#x) first.\n```bash\necho readme\n```\n## Documentation\n\n"
                      "- [a](docs/a.md)\n- [b](docs/b.md)\n- [missing](docs/missing.md)\n\n## Other\n")
    assert [page.name for page in readme_times.documented_pages(readme)] == ["README.md", "a.md", "b.md", "c.md"]
    commands = readme_times.documented_commands(readme)
    assert [(command.source, command.text) for command in commands] == [
        ("README.md", "echo readme"), ("docs/a.md", "echo a"), ("docs/b.md", "echo b"), ("docs/c.md", "echo c")]


def test_every_docs_page_is_on_the_readme_docs_map():
    pages = readme_times.documented_pages(REPO_ROOT / "README.md")
    assert sorted(page.name for page in pages[1:]) == sorted(page.name for page in (REPO_ROOT / "docs").glob("*.md"))


def test_make_demo_timing_lines_are_repeated_under_the_table(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("```bash\nprintf 'x\\ndemo timing: demo-a 3 s, total 3 s\\n'\n```\n")
    assert readme_times.main(["--repo", str(tmp_path), "--log_dir", str(tmp_path / "logs")]) == 0
    output = capsys.readouterr().out
    assert "| README.md:2 | `printf" in output and "\nREADME.md:2 demo timing: demo-a 3 s, total 3 s\n" in output
