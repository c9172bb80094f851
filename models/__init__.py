"""Model registry: `--model NAME` loads the BaseModel subclass in models/NAME_model.py.

A model file defines one class named like the file (gatys_model.py -> GatysModel) that subclasses
BaseModel and adds its own options in ``modify_commandline_options(parser, is_train)``.
"""

from models.base_model import BaseModel
from util.registry import available_names, find_class


def available_models():
    """Names accepted by --model."""
    return available_names("models", "_model", BaseModel)


def find_model_class(name):
    """The model class registered under `name`."""
    return find_class("models", "_model", name, BaseModel, "--model")


def get_option_setter(name):
    """The static hook through which model `name` adds its options."""
    return find_model_class(name).modify_commandline_options


def create_model(opt):
    """Instantiate the model named by opt.model."""
    return find_model_class(opt.model)(opt)
