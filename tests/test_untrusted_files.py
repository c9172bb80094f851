"""Files from elsewhere: pickles that would run code, old or foreign checkpoints, hostile names in result pages."""

import pickle
import random
from html.parser import HTMLParser
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from conftest import gatys_test_args, run_script
from PIL import Image
from test_cli import assert_one_line_error

from models.gatys_model import GRAM_KIND, GatysModel
from models.translators import load_translator
from models.ugatit_checkpoint import NETWORK_NAMES, SARGEN_STATE_KEY, read_checkpoint
from models.ugatit_networks import Generator
from models.vgg import load_vgg_features
from options.test_options import TestOptions
from util.checkpoint import FORMAT_KEY, FORMAT_VERSION, check_format, load_checkpoint, save_checkpoint
from util.errors import SargenError
from util.results import ImageResult, ResultsWriter


class OpensMarker:
    """Pickled, it records a call of open(marker, 'w'): unpickling it creates the marker file."""

    def __init__(self, marker):
        """Remember the marker path."""
        self.marker = str(marker)

    def __reduce__(self):
        """Unpickle as open(marker, 'w')."""
        return open, (self.marker, "w")


HOSTILE_FORMATS = ("torch.save", "pickle-2", "pickle-5")  # protocol 2 as torch's legacy files, 5 the newest


def hostile_file(path, marker, file_format="torch.save"):
    """A checkpoint-like file whose loading with plain pickle creates `marker`."""
    payload = {"genA2B": {"weight": OpensMarker(marker)}, "features.0.weight": OpensMarker(marker)}
    if file_format == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(file_format[-1])))
    return path


def assert_refused(error, path, file_format="torch.save"):
    """One line naming the file; the reason is that it could run code where the unpickler got to the call."""
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message
    assert "could run code" in message if file_format != "pickle-5" else "not a PyTorch file" in message, message


@pytest.mark.parametrize("file_format", HOSTILE_FORMATS)
def test_the_hostile_file_would_run_code_without_weights_only(tmp_path, file_format):
    """The control: loading the file the unsafe way does create the marker, so the refusals below mean something."""
    marker = tmp_path / "control_marker"
    path = hostile_file(tmp_path / "hostile.pth", marker, file_format)
    if file_format == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("file_format", HOSTILE_FORMATS)
@pytest.mark.parametrize("load_path", ["ugatit_checkpoint", "app_model_path", "vgg_weights"])
def test_hostile_pickle_is_refused_by_every_loader(tmp_path, load_path, file_format):
    """U-GAT-IT checkpoints (test.py --checkpoint, --continue_train), app.py --model_path, --vgg_weights FILE."""
    marker = tmp_path / "marker"
    path = hostile_file(tmp_path / "hostile.pth", marker, file_format)
    loaders = {"ugatit_checkpoint": read_checkpoint, "app_model_path": load_translator,
               "vgg_weights": lambda file: load_vgg_features("vgg16", str(file))}
    with pytest.raises(SargenError) as error:
        loaders[load_path](path)
    assert_refused(error, path, file_format)
    assert not marker.exists()


def test_hostile_gram_file_is_refused(x2ka_root, tmp_path):
    """The Gram file test.py --model gatys loads (CHECKPOINTS_DIR/NAME/latest_gram.pth)."""
    opt = TestOptions().parse(gatys_test_args(x2ka_root, tmp_path), save=False)
    gram_path = tmp_path / "checkpoints" / "tiny" / "latest_gram.pth"
    gram_path.parent.mkdir(parents=True, exist_ok=True)
    hostile_file(gram_path, tmp_path / "marker")
    with pytest.raises(SargenError) as error:
        GatysModel(opt)
    assert_refused(error, gram_path)
    assert not (tmp_path / "marker").exists()


def test_app_refuses_a_hostile_model_path_in_one_line(tmp_path):
    """The command line: app.py --model_path HOSTILE ends with one error line and runs nothing."""
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "eo.png")
    path = hostile_file(tmp_path / "hostile.pt", tmp_path / "marker")
    code, _, stderr = run_script("app.py", ["--model_path", path, "--img", tmp_path / "eo.png", "--out", tmp_path])
    assert_one_line_error(code, stderr, "hostile.pt", "could run code")
    assert not (tmp_path / "marker").exists()


def gram_payload(**changes):
    """A minimal Gram-file payload."""
    return {"kind": GRAM_KIND, "gram": {"relu1_2": torch.eye(2)}, **changes}


@pytest.mark.parametrize(("payload", "expected"), [
    (gram_payload(**{FORMAT_KEY: 0}), "has format version 0, this sargen reads version 1"),
    (gram_payload(**{FORMAT_KEY: FORMAT_VERSION + 1}), f"has format version {FORMAT_VERSION + 1}, this sargen"),
    (gram_payload(), "has no format version"),
    (torch.zeros(3), "is not a gatys_gram file (found 'Tensor')"),
    ({"gram": {}}, "is not a gatys_gram file (found None)"),
    ({"kind": "something_else", FORMAT_KEY: FORMAT_VERSION}, "is not a gatys_gram file (found 'something_else')"),
], ids=["older", "newer", "unversioned", "tensor", "no-kind", "other-kind"])
def test_old_newer_and_foreign_gram_files_are_named(tmp_path, payload, expected):
    path = tmp_path / "latest_gram.pth"
    torch.save(payload, path)
    with pytest.raises(SargenError) as error:
        check_format(load_checkpoint(path, "Gram file"), path, GRAM_KIND)
    assert expected in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.fixture(scope="module")
def generator_states():
    """The state dicts of six tiny networks under the checkpoint's names (generators only matter here)."""
    state = Generator(3, 1, ngf=4, n_blocks=1, img_size=32, light=True).state_dict()
    return {name: state for name in NETWORK_NAMES}


@pytest.mark.parametrize(("extra", "expected"), [
    ({FORMAT_KEY: 0}, "has format version 0, this sargen reads version 1"),
    ({FORMAT_KEY: FORMAT_VERSION + 1}, f"has format version {FORMAT_VERSION + 1}"),
    ({SARGEN_STATE_KEY: {"iteration": 3}}, "has no format version"),
], ids=["older", "newer", "sargen-state-without-version"])
def test_sargen_ugatit_checkpoints_of_another_version_are_refused(tmp_path, generator_states, extra, expected):
    path = tmp_path / "latest_net_ugatit.pth"
    torch.save({**generator_states, **extra}, path)
    with pytest.raises(SargenError) as error:
        read_checkpoint(path)
    assert expected in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)


def test_current_and_reference_ugatit_checkpoints_load(tmp_path, generator_states):
    """A file sargen saves now, and a plain reference-code file (no version: the published eo2sar format)."""
    save_checkpoint({**generator_states, SARGEN_STATE_KEY: {"iteration": 1}}, tmp_path / "sargen.pth")
    assert read_checkpoint(tmp_path / "sargen.pth")[FORMAT_KEY] == FORMAT_VERSION
    torch.save(generator_states, tmp_path / "reference.pth")
    assert set(NETWORK_NAMES) <= set(read_checkpoint(tmp_path / "reference.pth"))


def truncated_checkpoint(path, states):
    """A sargen checkpoint cut in half, as a full disk or a copy interrupted leaves it."""
    save_checkpoint(dict(states), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


FOREIGN_CHECKPOINTS = {
    "tensor": (lambda path, states: torch.save(torch.zeros(2), path), "is not a U-GAT-IT checkpoint"),
    "other-dict": (lambda path, states: torch.save({"weights": torch.zeros(1)}, path), "is not a U-GAT-IT checkpoint"),
    "empty": (lambda path, states: path.write_bytes(b""), "cannot load U-GAT-IT checkpoint"),
    "text": (lambda path, states: path.write_bytes(b"not a pytorch file"), "cannot load U-GAT-IT checkpoint"),
    "truncated": (truncated_checkpoint, "cannot load U-GAT-IT checkpoint"),
}


@pytest.mark.parametrize("kind", FOREIGN_CHECKPOINTS)
def test_foreign_empty_and_truncated_checkpoints_are_one_line(tmp_path, generator_states, kind):
    path = tmp_path / "latest_net_ugatit.pth"
    write, expected = FOREIGN_CHECKPOINTS[kind]
    write(path, generator_states)
    with pytest.raises(SargenError) as error:
        read_checkpoint(path)
    message = str(error.value)
    assert expected in message and str(path) in message and "\n" not in message, message


def test_damaged_checkpoints_are_one_line_errors(tmp_path):
    """Every truncation length and 300 seeded random byte changes of a small checkpoint: a clean error or a load."""
    payload = {"genA2B": {"weight": torch.arange(6.0)}, SARGEN_STATE_KEY: {"iteration": 1, "options": {"lr": 1e-4}}}
    data = save_checkpoint(payload, tmp_path / "good.pth").read_bytes()
    rng = random.Random(7)
    damaged = [data[:cut] for cut in range(len(data))]
    for _ in range(300):
        changed = bytearray(data)
        for _ in range(rng.choice((1, 2, 8))):
            changed[rng.randrange(len(changed))] = rng.randrange(256)
        damaged.append(bytes(changed))
    path = tmp_path / "latest_net_ugatit.pth"
    for content in damaged:
        path.write_bytes(content)
        try:
            read_checkpoint(path)
        except SargenError as error:
            assert "\n" not in str(error) and str(path) in str(error), str(error)


HOSTILE_NAME = 'a<script>alert(1)<!--x&y#1?%41 z"q'


class PageText(HTMLParser):
    """The elements, comments, text and image sources of a page."""

    def __init__(self):
        """Start empty."""
        super().__init__()
        self.tags, self.comments, self.text, self.sources = [], [], [], []

    def handle_starttag(self, tag, attrs):
        """Record the element and, for images, the source."""
        self.tags.append(tag)
        self.sources += [value for name, value in attrs if tag == "img" and name == "src"]

    def handle_comment(self, data):
        """Record a comment."""
        self.comments.append(data)

    def handle_data(self, data):
        """Record text."""
        self.text.append(data)


def test_hostile_image_name_is_text_on_the_results_page_and_its_image_resolves(tmp_path):
    writer = ResultsWriter(tmp_path / "results", "Experiment = <b>x</b>", 64, [f"checkpoint {HOSTILE_NAME}.pth"])
    writer.add(ImageResult(HOSTILE_NAME, {"real_A": torch.zeros(3, 4, 4), "fake_B": torch.ones(1, 4, 4)},
                           {"loss": 1.0}))
    page = writer.save()
    parsed = PageText()
    parsed.feed(page.read_text())
    assert "script" not in parsed.tags and "b" not in parsed.tags and not parsed.comments
    assert HOSTILE_NAME in [text.strip() for text in parsed.text]
    assert f"checkpoint {HOSTILE_NAME}.pth" in [text.strip() for text in parsed.text]
    assert len(parsed.sources) == 2
    for source in parsed.sources:
        assert not set("#?\"<> ") & set(source), source
        assert (page.parent / unquote(source)).is_file(), source
    assert {unquote(source) for source in parsed.sources} == {f"images/{HOSTILE_NAME}_real_A.png",
                                                              f"images/{HOSTILE_NAME}_fake_B.png"}
