"""Registries that find a class by name in a package of one-file plugins (models/NAME_model.py, ...)."""

import importlib
import pkgutil

from util.errors import SargenError

# PACKAGE/base{suffix}.py holds the base class every plugin subclasses (models/base_model.py): not a plugin itself.
BASE_NAME = "base"


def available_names(package_name, suffix):
    """Names NAME of the plugin modules PACKAGE/NAME{suffix}.py, sorted (the base module left out)."""
    package = importlib.import_module(package_name)
    names = [info.name[: -len(suffix)] for info in pkgutil.iter_modules(package.__path__) if info.name.endswith(suffix)]
    return sorted(name for name in names if name != BASE_NAME)


def find_class(package_name, suffix, name, base_class, option):
    """Import PACKAGE/NAME{suffix}.py and return its subclass of `base_class` named like NAME."""
    choices = available_names(package_name, suffix)
    if name not in choices:
        raise SargenError(f"unknown {option} '{name}': choose one of {', '.join(choices)}")
    module = importlib.import_module(f"{package_name}.{name}{suffix}")
    wanted = (name + suffix).replace("_", "").lower()
    for attribute_name, attribute in vars(module).items():
        if attribute_name.lower() == wanted and isinstance(attribute, type) and issubclass(attribute, base_class):
            return attribute
    raise SargenError(f"{package_name}/{name}{suffix}.py defines no {base_class.__name__} subclass named like {wanted}")
