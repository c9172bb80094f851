"""Training by steps, shared by the models train.py runs for --iteration steps (U-GAT-IT, and any like it).

What it gives a model: the reproducible sample order of every step (TrainingSampler), checkpoints with the
state for an exact resume (the step, options, optimizer and random states, under the model's `state_key`),
loss logging, the visdom display and the training HTML page at their frequencies, the stop on a NaN or
infinite loss, and with --eval_freq the scores of test images over steps and best_net (evaluation.training).
A subclass builds `self.networks` ({name: module}) and `self.optimizers` ({name: optimizer}), and implements
optimize_parameters(), get_current_visuals(), read_checkpoint(), load_for_test() (test.py) and, for --eval_freq,
translate_for_evaluation().
"""

import logging
import math
import time
from abc import abstractmethod
from collections import OrderedDict
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from data.base_dataset import BaseDataset
from data.radiometry import radiometry_for, radiometry_record, use_radiometry_record
from evaluation.training import BestCheckpoint, TrainingEvaluation
from models.base_model import BaseModel
from util import distributed
from util.checkpoint import (
    alias_checkpoint,
    load_state_dict_strict,
    plain_options,
    rng_state,
    save_checkpoint,
    saved_file,
    set_rng_state,
    state_dicts_on_cpu,
)
from util.errors import SargenError
from util.versions import software_versions
from util.visualizer import Visualizer
from util.visuals import display_image

logger = logging.getLogger("sargen")


def linear_decay_learning_rate(step, opt):
    """The learning rate of 1-based `step`: constant, then linear decay to 0 over the second half (--decay_flag)."""
    half = opt.iteration // 2
    if not getattr(opt, "decay_flag", False) or half == 0 or step <= half:
        return opt.lr
    return opt.lr * max(0.0, 1.0 - (step - half) / half)


class TrainingSampler(Sampler):
    """(index per domain..., seed) per sample of this rank for steps start_step+1 .. iteration, from any step.

    Samples are numbered globally: step s (from 0) reads positions s * G .. s * G + G - 1 with G = batch_size *
    world_size, and rank r reads block r (batch_size positions) of them. The ranks' shares are thus disjoint and
    together read what one process with batch size G reads. Each domain is read in a fresh seeded permutation per
    pass (in order with --serial_batches), and each sample's crop/flip seed derives from the seed and its position
    only, so every rank draws its own deterministic crops and a resumed run sees the same data.
    """

    def __init__(self, counts, batch_size, start_step, iteration, seed, serial=False, rank=0, world_size=1):
        """Remember the domain sizes (one count per domain), the steps to cover and this rank's place."""
        self.counts, self.batch_size, self.seed, self.serial = counts, batch_size, seed, serial
        self.start_step, self.iteration = start_step, iteration
        self.rank, self.world_size = rank, world_size

    def __len__(self):
        """Samples left to yield."""
        return max(0, self.iteration - self.start_step) * self.batch_size

    def positions(self):
        """The global positions of this rank's samples, step by step."""
        global_batch = self.batch_size * self.world_size
        for step in range(self.start_step, self.iteration):
            first = step * global_batch + self.rank * self.batch_size
            yield from range(first, first + self.batch_size)

    def index(self, domain, position, cache):
        """The image index of `domain` at global sample `position`."""
        count = self.counts[domain]
        if self.serial:
            return position % count
        epoch = position // count
        if cache.get(domain, (None,))[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 2 + domain)
            cache[domain] = (epoch, torch.randperm(count, generator=generator).tolist())
        return cache[domain][1][position % count]

    def __iter__(self):
        """Yield one (index of each domain..., seed) per sample."""
        cache = {}
        for position in self.positions():
            indices = tuple(self.index(domain, position, cache) for domain in range(len(self.counts)))
            yield (*indices, self.seed * 1_000_003 + position)


class StepTrainedModel(BaseModel):
    """A model trained for --iteration steps with checkpoints, exact resume, logs, visdom and an HTML page."""

    state_key = "sargen_state"  # where sargen's resume state sits in the checkpoint
    checkpoint_suffix = "_net.pth"  # CHECKPOINTS_DIR/NAME/EPOCH{checkpoint_suffix}
    checkpoint_what = "model"  # how errors name the model's checkpoints ("U-GAT-IT checkpoint not found: ...")

    def __init__(self, opt):
        """Start at step 0 with no networks, optimizers, losses or checkpoint yet."""
        super().__init__(opt)
        self.step = 0
        self.losses = {}
        self.networks = OrderedDict()
        self.optimizers = OrderedDict()
        self.visualizer = None
        self.last_checkpoint = None  # (path, iteration) of the newest checkpoint saved or resumed from
        self.best = BestCheckpoint(getattr(opt, "best_metric", "auto"))  # --eval_freq's best step, resumed
        self.training_evaluation = None

    # ---- what a subclass provides -----------------------------------------------------------------

    @abstractmethod
    def read_checkpoint(self, path):
        """Load and check a checkpoint file of this model (weights_only)."""
        raise NotImplementedError

    @abstractmethod
    def get_current_visuals(self):
        """{label: CxHxW tensor in [-1, 1]} of the last step, for visdom and the HTML page."""
        raise NotImplementedError

    def wrap_for_distributed(self):
        """Wrap the step's forward modules in DistributedDataParallel under torchrun (nothing by default)."""

    def learning_rate(self, step):
        """The learning rate of 1-based `step` (constant, then linear decay with --decay_flag)."""
        return linear_decay_learning_rate(step, self.opt)

    def translate_for_evaluation(self, images):
        """Translations (B x C x S x S in [-1, 1]) of source test images (same shape) for --eval_freq."""
        raise SargenError(f"--eval_freq: --model {self.opt.model} cannot translate test images during training")

    def evaluation_image_size(self):
        """The side S test images are resized to for translate_for_evaluation (--img_size, else --crop_size)."""
        return getattr(self.opt, "img_size", None) or self.opt.crop_size

    def checkpoint_path(self, epoch):
        """CHECKPOINTS_DIR/NAME/EPOCH{checkpoint_suffix}, for --epoch latest or an iteration number."""
        return Path(self.save_dir) / f"{epoch}{self.checkpoint_suffix}"

    def saved_checkpoint_path(self, epoch):
        """checkpoint_path(epoch) if that file exists, else an error listing the saved steps."""
        return saved_file(self.save_dir, epoch, self.checkpoint_suffix, f"{self.checkpoint_what} checkpoint")

    # ---- checkpoints ------------------------------------------------------------------------------

    def training_state(self):
        """sargen's resume state: the step, options, optimizer states, learning rate and random states, the
        radiometry record of both domains (how their images were read: test.py reads them the same way) and the
        software versions."""
        state = {"iteration": self.step, "options": plain_options(self.opt)}
        state.update({f"optimizer_{name}": optimizer.state_dict() for name, optimizer in self.optimizers.items()})
        state.update({"learning_rate": self.learning_rate(self.step), "rng": rng_state()})
        state["evaluation"] = self.best.state()
        state["radiometry"] = radiometry_record(self.opt)
        state["software"] = software_versions()  # what made it (util.versions)
        return state

    def use_radiometry_record(self, state, path):
        """At test: the checkpoint's radiometry record (from its resume `state`) as the reading defaults."""
        self.radiometry_changes = use_radiometry_record(self.opt, state.get("radiometry"), path)

    def radiometry_notes(self):
        """Results-page lines: how each domain is read, and what differs from training."""
        recorded = "" if self.opt.radiometry_record else " (the checkpoint records none)"
        notes = [f"domain {domain} read as: {radiometry_for(self.opt, domain).describe()}{recorded}"
                 for domain in "AB"]
        if self.radiometry_changes:
            notes.append(f"differs from training: {'; '.join(self.radiometry_changes)}")
        return notes

    def shown(self, image, domain):
        """An image of `domain` as pages show it (util.visuals.display_image: multi-band SAR in false colour)."""
        return display_image(image.detach().float().cpu(), radiometry_for(self.opt, domain))

    def save(self, step_label=None):
        """Save latest{suffix} (and STEP{suffix}, latest then a link to it) atomically; return the file written."""
        payload = state_dicts_on_cpu(self.networks)
        payload[self.state_key] = self.training_state()
        latest = self.checkpoint_path("latest")
        try:
            if step_label is None:
                saved = save_checkpoint(payload, latest)
            else:
                saved = save_checkpoint(payload, self.checkpoint_path(step_label))
                alias_checkpoint(saved, latest)
        except SargenError as error:  # e.g. a full disk: the earlier files are kept, loadable
            raise SargenError(f"{error} ({self.kept_checkpoint_text()}; free space, then resume with "
                              f"--continue_train)") from None
        self.last_checkpoint = (latest, self.step)
        return saved

    def kept_checkpoint_text(self):
        """Which checkpoint a stopped run leaves to resume from, in words."""
        if self.last_checkpoint is None:
            return "no checkpoint had been saved yet"
        path, iteration = self.last_checkpoint
        return f"the last good checkpoint {path} (iteration {iteration}) is kept"

    def resume(self):
        """Load the --epoch checkpoint into the networks, optimizers, step counter and random states (every rank)."""
        path = self.saved_checkpoint_path(self.opt.epoch)
        payload = self.read_checkpoint(path)
        for name, network in self.networks.items():
            if name not in payload:
                raise SargenError(f"{path} has no '{name}' state dict: resume from a checkpoint of this model")
            load_state_dict_strict(network, payload[name], f"{path} '{name}'")
        state = payload.get(self.state_key)
        if not isinstance(state, dict):
            self.step = int(self.opt.epoch) if str(self.opt.epoch).isdigit() else 0
            self.last_checkpoint = (path, self.step)
            logger.warning("%s holds only the networks (reference format): optimizers start fresh at step %d",
                           path, self.step)
            return
        self.step = int(state["iteration"])
        try:
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(state[f"optimizer_{name}"])
        except (ValueError, KeyError) as error:
            raise SargenError(f"{path}: its optimizer state does not fit these networks ({error})") from None
        set_rng_state(state["rng"])
        self.best.load(state.get("evaluation"))
        self.last_checkpoint = (path, self.step)
        logger.info("resumed from %s at step %d, learning rate %g", path, self.step, self.learning_rate(self.step))

    # ---- the training loop's hooks ----------------------------------------------------------------

    def load_for_test(self):
        """test.py: load the checkpoint the model translates with."""
        raise NotImplementedError(f"--model {self.opt.model} has no test step")

    def setup(self):
        """Training: resume (--continue_train), wrap for torchrun and start the display (rank 0); testing:
        load_for_test()."""
        if not self.is_train:
            self.load_for_test()
            return
        if self.opt.continue_train:
            self.resume()
        self.start_step = self.last_logged_step = self.step
        self.wrap_for_distributed()
        self.visualizer = Visualizer(self.opt) if distributed.is_main() else None
        self.start_evaluation()
        self.step_started = time.perf_counter()

    def training_batches(self, dataset, counts):
        """This rank's batches for the steps still to run (see TrainingSampler); `counts`: images per domain."""
        sampler = TrainingSampler(counts, self.opt.batch_size, self.start_step, self.opt.iteration, self.opt.seed,
                                  self.opt.serial_batches, distributed.rank(), distributed.world_size())
        # Its own generator: starting the loader draws the workers' base seed from it, not from the global torch
        # stream that the steps use (dropout), so a resumed run's steps draw what the uninterrupted run's did.
        return DataLoader(dataset, batch_size=self.opt.batch_size, sampler=sampler, num_workers=self.opt.num_threads,
                          collate_fn=BaseDataset.collate, generator=torch.Generator().manual_seed(self.opt.seed))

    def num_training_steps(self, dataset):
        """--iteration."""
        return self.opt.iteration

    def set_learning_rate(self):
        """Set every optimizer's learning rate for the current step (times a parameter group's `lr_scale`)."""
        rate = self.learning_rate(self.step)
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = rate * group.get("lr_scale", 1.0)

    def stop_if_not_finite(self, losses):
        """`losses` detached and averaged over the ranks; stops the run (on every rank alike) if one is NaN or Inf."""
        averaged = distributed.all_reduce_mean({name: value.detach().float() for name, value in losses.items()})
        if torch.isfinite(torch.stack(list(averaged.values()))).all():
            return averaged
        name, value = next((name, float(value)) for name, value in averaged.items() if not math.isfinite(value))
        raise SargenError(f"non-finite loss at iteration {self.step}: {name} = {value}; "
                          f"{self.kept_checkpoint_text()} (lower --lr or check the data)")

    def get_current_losses(self):
        """The last step's losses as {name: float}."""
        return OrderedDict((name, float(value)) for name, value in self.losses.items())

    def is_reported(self, frequency):
        """Whether after_step reports the current step at `frequency`: every frequency-th step and the run's first."""
        return self.step % frequency == 0 or self.step == self.start_step + 1

    def log_losses(self, progress_bar=None):
        """Log the current step's losses (loss_log.txt, visdom plot, progress bar) with the time per step since the
        last logged one."""
        step = self.step
        seconds = (time.perf_counter() - self.step_started) / max(1, step - self.last_logged_step)
        losses = self.get_current_losses()
        self.visualizer.print_current_losses(step, losses, self.learning_rate(step), seconds)
        self.visualizer.plot_current_losses(step, losses)
        if progress_bar is not None:
            progress_bar.set_postfix({name: f"{value:.3f}" for name, value in self.progress_losses(losses)})
        self.last_logged_step, self.step_started = step, time.perf_counter()

    def report(self, frequencies_met, progress_bar=None):
        """Log, display and add to the HTML page as `frequencies_met(frequency)` says for each of them."""
        opt = self.opt
        if frequencies_met(opt.print_freq):
            self.log_losses(progress_bar)
        if frequencies_met(opt.display_freq):
            self.visualizer.display_current_results(self.get_current_visuals(), self.step)
        if frequencies_met(opt.update_html_freq):
            self.visualizer.save_html_images(self.get_current_visuals(), self.step)

    def after_step(self, progress_bar=None):
        """On rank 0: log, display and add to the HTML page at their frequencies and at the run's first step; save at
        --save_freq."""
        if not distributed.is_main():
            return
        self.evaluate_at_step()
        self.report(self.is_reported, progress_bar)
        if self.step % self.opt.save_freq == 0:
            logger.info("saved %s", self.save(step_label=self.step))

    # ---- scores during training (--eval_freq) ------------------------------------------------------

    def start_evaluation(self):
        """On rank 0 with --eval_freq: read the test subset, fix the best metric (resumed or new)."""
        if not getattr(self.opt, "eval_freq", 0) or not distributed.is_main():
            return
        with torch.random.fork_rng(devices=[]):  # building networks draws random numbers: keep training's stream
            self.training_evaluation = TrainingEvaluation(self.opt, self.device, self.evaluation_image_size())
        self.best.start(self.training_evaluation.available_metrics(), self.training_evaluation.description)

    def evaluate_at_step(self):
        """Every --eval_freq steps and at the last: score the test subset, log it, save best_net on a new best."""
        if self.training_evaluation is None or (self.step % self.opt.eval_freq and self.step != self.opt.iteration):
            return
        started = time.perf_counter()
        was_training = {name: network.training for name, network in self.networks.items()}
        for network in self.networks.values():
            network.eval()
        try:
            with torch.random.fork_rng(devices=[]):
                scores = self.training_evaluation.score(self.translate_for_evaluation)
        finally:
            for name, network in self.networks.items():
                network.train(was_training[name])
        improved = self.best.update(self.step, scores)
        if improved:
            path = save_checkpoint({**state_dicts_on_cpu(self.networks), self.state_key: self.training_state()},
                                   self.checkpoint_path("best"))
            logger.info("saved %s", path)
        note = f"best {self.best.metric} {self.best.value:.6g} at step {self.best.step}" if self.best.step else ""
        self.visualizer.print_current_metrics(self.step, scores, note)
        self.step_started += time.perf_counter() - started  # the loss log times training steps only

    def progress_losses(self, losses):
        """The (name, value) pairs shown on the progress bar: the last two losses by default."""
        return list(losses.items())[-2:]

    def finish_training(self):
        """On rank 0: log, display, add to the HTML page and save the last step where after_step did not."""
        if not distributed.is_main() or self.step <= self.start_step:
            return
        self.report(lambda frequency: not self.is_reported(frequency))
        if self.step % self.opt.save_freq != 0:
            logger.info("saved %s", self.save(step_label=self.step))
