"""Several processes through torchrun (2 CPU ranks, gloo on loopback): DDP training, sharded Gram and test runs,
the NaN/Inf stop, and the helpers without a process group."""

import re

import pytest
import torch
from conftest import gatys_test_args, gatys_train_args, make_eo2sar, run_torchrun
from sgd_train import assert_same_gradients, assert_sgd_weights_agree, train_with_sgd
from ugatit_helpers import (
    loss_values,
    one_torch_thread,  # noqa: F401  (autouse fixture)
    read_loss_log,
    run_entry_point,
    ugatit_args,
)

import train as train_script
from datasets.make_dataset import main as make_dataset
from models.step_trained_model import TrainingSampler
from models.ugatit_checkpoint import NETWORK_NAMES, SARGEN_STATE_KEY, read_checkpoint
from util import distributed
from util.checkpoint import load_checkpoint
from util.results import ImageResult, ResultsWriter

RANKS = 2
LEARNING_RATE = 1e-4
# DDP's promise, checked on gradients (tests/sgd_train.py says why not on Adam's weights): the all-reduced gradients
# equal one process's on the global batch up to float rounding (measured: 1e-5 of their scale), relative to their scale.
GRADIENT_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def eo2sar_root(tmp_path_factory):
    """A tiny unpaired EO/SAR set: 40 px, 4 images per training domain."""
    return make_eo2sar(tmp_path_factory, "eo2sar", size=40, n_train=4, n_test=1)


@pytest.fixture(scope="module")
def x2ka_three_tests(tmp_path_factory):
    """A tiny cross-band set with 3 test pairs, so that 2 ranks get unequal shares."""
    root = tmp_path_factory.mktemp("x2ka3")
    make_dataset(["x2ka", "--out", str(root), "--size", "32", "--n_train", "5", "--n_test", "3"])
    return root


@pytest.fixture(scope="module")
def ugatit_runs(eo2sar_root, tmp_path_factory):
    """One plain-SGD step of 2 ranks x batch 1 (torchrun) and of one process with batch 2 on the same two samples,
    each recording the gradients of its updates: the checkpoints folder."""
    work = tmp_path_factory.mktemp("ddp_ugatit")
    common = ("--iteration", 1, "--save_freq", 1, "--lr", LEARNING_RATE)
    code, _, stderr = run_torchrun("tests/sgd_train.py", [work / "ddp_gradients.pt", *ugatit_args(
        eo2sar_root, work, "ddp", *common, "--batch_size", 1)])
    assert code == 0, stderr
    train_with_sgd(ugatit_args(eo2sar_root, work, "single", *common, "--batch_size", RANKS),
                   work / "single_gradients.pt")
    return work / "checkpoints"


@pytest.fixture(scope="module")
def gram_runs(x2ka_three_tests, tmp_path_factory):
    """The Gram precompute by 2 ranks (torchrun) and by one process: (torchrun work folder, single one)."""
    work = tmp_path_factory.mktemp("ddp_gram")
    code, _, stderr = run_torchrun("train.py", gatys_train_args(x2ka_three_tests, work / "ddp"))
    assert code == 0, stderr
    train_script.main(gatys_train_args(x2ka_three_tests, work / "single"))
    return work / "ddp", work / "single"


@pytest.mark.numerics
def test_ddp_step_updates_weights_as_one_process_on_the_global_batch(ugatit_runs):
    """2 ranks x batch 1 get the gradients of 1 process x batch 2 (both updates: D, then G), so a plain-SGD step
    gives its weights, and its losses; rank 0 alone writes plain-keyed files."""
    work = ugatit_runs.parent
    ranks = [torch.load(f"{work / 'ddp_gradients.pt'}.rank{rank}", weights_only=True) for rank in range(RANKS)]
    single = torch.load(work / "single_gradients.pt", weights_only=True)
    scale = assert_same_gradients(ranks, single, ("G", "D"), GRADIENT_TOLERANCE)
    ddp = read_checkpoint(ugatit_runs / "ddp" / "latest_net_ugatit.pth")
    single = read_checkpoint(ugatit_runs / "single" / "latest_net_ugatit.pth")
    assert ddp[SARGEN_STATE_KEY]["iteration"] == single[SARGEN_STATE_KEY]["iteration"] == 1
    for name in NETWORK_NAMES:
        assert not any(key.startswith("module.") for key in ddp[name])
        assert_sgd_weights_agree(ddp[name], single[name], LEARNING_RATE * GRADIENT_TOLERANCE * scale, name)
    ddp_log, single_log = (folder / "loss_log.txt" for folder in (ugatit_runs / "ddp", ugatit_runs / "single"))
    ddp_losses, single_losses = (loss_values(read_loss_log(log)[1][1]) for log in (ddp_log, single_log))
    assert ddp_losses == pytest.approx(single_losses, rel=1e-4)
    assert sum(line.startswith("(step: 1,") for line in ddp_log.read_text().splitlines()) == 1


@pytest.mark.numerics
def test_sharded_gram_equals_the_single_process_gram(gram_runs):
    """Each rank reads its share of the images; the summed Grams, counts and metadata equal one process's."""
    ddp_work, single_work = gram_runs
    ddp = load_checkpoint(ddp_work / "checkpoints" / "tiny" / "latest_gram.pth")
    single = load_checkpoint(single_work / "checkpoints" / "tiny" / "latest_gram.pth")
    for key in ("image_count", "categories", "image_size", "style_layers", "weights"):
        assert ddp[key] == single[key], key
    assert ddp["image_count"] == 5
    for name, gram in single["gram"].items():
        assert torch.allclose(ddp["gram"][name], gram, rtol=1e-6, atol=0), name
    assert list(ddp["category_gram"]) == list(single["category_gram"])
    for category, grams in single["category_gram"].items():
        for name, gram in grams.items():
            assert torch.allclose(ddp["category_gram"][category][name], gram, rtol=1e-6, atol=0), (category, name)


def test_sharded_test_run_writes_every_image_once(x2ka_three_tests, gram_runs):
    """test.py on 2 ranks: 3 images split 2 + 1, every image file written, the page and log list each once, in order."""
    ddp_work, _ = gram_runs
    code, _, stderr = run_torchrun("test.py", gatys_test_args(x2ka_three_tests, ddp_work, "--n_iter", 3,
                                                              "--log_freq", 1, "--batch_size", 2))
    assert code == 0, stderr
    web_dir = ddp_work / "results" / "tiny" / "test_latest"
    names = sorted(path.stem for path in (x2ka_three_tests / "test" / "A").iterdir())
    assert len(names) == 3
    images = sorted(path.name for path in (web_dir / "images").glob("*.png"))
    assert images == sorted(f"{name}_{label}.png" for name in names for label in ("real_A", "fake_B", "real_B"))
    assert sorted(path.name for path in (web_dir / "images").glob("*.row.json")) == [f"{name}.row.json"
                                                                                      for name in names]
    page = (web_dir / "index.html").read_text()
    assert re.findall(r"<h3>([^<]+)</h3>", page) == names
    assert sorted(re.findall(r'src="([^"]+)"', page)) == [f"images/{image}" for image in images]
    finals = [line.split(")")[0][len("(image: "):] for line in (web_dir / "loss_log.txt").read_text().splitlines()
              if " final " in line]
    assert finals == names
    assert (web_dir / "test_opt.txt").is_file()


def test_non_finite_loss_stops_every_rank_and_keeps_the_checkpoint(ugatit_runs, eo2sar_root):
    """A CAM weight that overflows float32 makes G infinite: both ranks stop with the iteration and the term,
    before any update is saved; the checkpoint on disk stays byte for byte the last good one."""
    work = ugatit_runs.parent
    with pytest.MonkeyPatch.context() as monkeypatch:  # a checkpoint of the usual Adam training at iteration 1
        run_entry_point(train_script, ugatit_args(eo2sar_root, work, "overflow", "--iteration", 1, "--save_freq", 1),
                        monkeypatch)
    folder = ugatit_runs / "overflow"
    latest = folder / "latest_net_ugatit.pth"
    (folder / "1_net_ugatit.pth").unlink()
    before = latest.read_bytes(), latest.stat().st_mtime_ns
    args = ugatit_args(eo2sar_root, work, "overflow", "--iteration", 3, "--save_freq", 1, "--continue_train",
                       "--cam_weight", "1e39")
    code, _, stderr = run_torchrun("train.py", args)
    assert code != 0
    # Both ranks raise at the same check; torchrun ends the slower one as soon as the first exits (code 2).
    errors = [line[line.index("error: "):] for line in stderr.splitlines() if "error: " in line]  # after a bar
    assert 1 <= len(errors) <= RANKS and re.search(r"exitcode\s*: 2 ", stderr), stderr
    for error in errors:
        assert re.fullmatch(r"error: \[rank [01]\] non-finite loss at iteration 2: G = inf; the last good checkpoint "
                            r"\S+latest_net_ugatit.pth \(iteration 1\) is kept \(lower --lr or check the data\)",
                            error), error
    assert (latest.read_bytes(), latest.stat().st_mtime_ns) == before
    assert read_checkpoint(latest)[SARGEN_STATE_KEY]["iteration"] == 1
    assert sorted(path.name for path in folder.glob("*.pth")) == ["latest_net_ugatit.pth"]


def test_training_sampler_gives_each_rank_a_disjoint_block_of_every_step():
    """Rank r reads block r of each step's global batch: together the ranks read what one process reads."""
    single = list(TrainingSampler([5, 3], 4, 1, 4, seed=1))
    shares = [list(TrainingSampler([5, 3], 2, 1, 4, seed=1, rank=rank, world_size=2)) for rank in range(2)]
    merged = [sample for step in range(3) for share in shares for sample in share[2 * step: 2 * step + 2]]
    assert merged == single
    assert not {seed for _, _, seed in shares[0]} & {seed for _, _, seed in shares[1]}


def test_without_torchrun_the_helpers_are_single_process_no_ops(tmp_path):
    """No process group: rank 0 of 1, shards hold everything, collectives return their input."""
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.shard(range(4)) == [0, 1, 2, 3]
    sums = {"a": torch.ones(2), ("b", "c"): torch.zeros((), dtype=torch.float64)}
    summed = distributed.all_reduce_sum(distributed.with_keys_of_all_ranks(sums))
    assert list(summed) == list(sums) and all(summed[key] is value for key, value in sums.items())
    assert distributed.gather_objects("row") == ["row"]


def test_results_page_lists_rows_in_dataset_order(tmp_path):
    """Rows added out of order (as ranks' shares arrive) are written in the order of their positions."""
    writer = ResultsWriter(tmp_path, "order")
    for position, name in ((2, "c"), (0, "a"), (1, "b")):
        writer.add(ImageResult(name, {"fake_B": torch.zeros(1, 4, 4)}, {"total": 1.0}), position)
    page = writer.save().read_text()
    assert re.findall(r"<h3>([^<]+)</h3>", page) == ["a", "b", "c"]
