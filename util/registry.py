"""Registries that find a class by name in a package of one-file plugins (models/NAME_model.py, ...).

A plugin is runnable when its file defines a subclass of the registry's base class named like the file that leaves
no abstract method unimplemented. Base classes (models/base_model.py's BaseModel, models/step_trained_model.py's
StepTrainedModel, data/base_dataset.py's BaseDataset) declare what subclasses must provide as abstract methods, so
they are never offered as --model or --dataset_mode choices, nor is any future base class that does the same.
"""

import importlib
import inspect
import pkgutil

from util.errors import SargenError


def plugin_class(package_name, suffix, name, base_class):
    """The subclass of `base_class` that PACKAGE/NAME{suffix}.py defines under the file's name, or None."""
    module = importlib.import_module(f"{package_name}.{name}{suffix}")
    wanted = (name + suffix).replace("_", "").lower()
    for attribute_name, attribute in vars(module).items():
        if attribute_name.lower() == wanted and isinstance(attribute, type) and issubclass(attribute, base_class):
            return attribute
    return None


def is_runnable(cls):
    """Whether `cls` is a plugin class a user can run: found, and with no abstract method left."""
    return cls is not None and not inspect.isabstract(cls)


def available_names(package_name, suffix, base_class):
    """Names NAME of the plugin modules PACKAGE/NAME{suffix}.py whose class is runnable (see the module), sorted."""
    package = importlib.import_module(package_name)
    names = [info.name[: -len(suffix)] for info in pkgutil.iter_modules(package.__path__) if info.name.endswith(suffix)]
    return sorted(name for name in names if is_runnable(plugin_class(package_name, suffix, name, base_class)))


def find_class(package_name, suffix, name, base_class, option):
    """The runnable subclass of `base_class` in PACKAGE/NAME{suffix}.py; an error listing the choices otherwise."""
    choices = available_names(package_name, suffix, base_class)
    if name not in choices:
        raise SargenError(f"unknown {option} '{name}': choose one of {', '.join(choices)}")
    return plugin_class(package_name, suffix, name, base_class)
