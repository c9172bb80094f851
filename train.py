"""Train a model: python train.py --model gatys|gatys_feedforward|ugatit --dataroot DIR --name NAME [options]."""

from data import create_dataset
from models import create_model
from options.train_options import TrainOptions
from util.cli import progress, run_main


def main(argv=None):
    """Parse options, build the dataset and model from the registries, and run the training loop."""
    opt = TrainOptions().parse(argv)
    dataset = create_dataset(opt)
    model = create_model(opt)
    model.setup()
    batches = model.training_batches(dataset)
    with progress(total=model.num_training_steps(dataset), initial=model.start_step, desc="training",
                  unit="step") as bar:
        for batch in batches:
            model.set_input(batch)
            model.optimize_parameters()
            bar.update(1)
            model.after_step(bar)
    model.finish_training()
    dataset.report_nodata_skips()


if __name__ == "__main__":
    run_main(main)
