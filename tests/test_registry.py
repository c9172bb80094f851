"""Registries offer only runnable plugins: a class named like its file with no abstract method left."""

import inspect
import sys
import textwrap

import pytest

import data
import models
from util.errors import SargenError
from util.registry import available_names, find_class

PLUGINS = {
    "__init__.py": "",
    "base_widget.py": """
        from abc import ABC, abstractmethod

        class BaseWidget(ABC):
            @abstractmethod
            def run(self): ...
        """,
    "looping_widget.py": """
        from abc import abstractmethod
        from widgets.base_widget import BaseWidget

        class LoopingWidget(BaseWidget):  # a shared base class: still leaves `step` to its subclasses
            def run(self):
                return self.step()

            @abstractmethod
            def step(self): ...
        """,
    "round_widget.py": """
        from widgets.looping_widget import LoopingWidget

        class RoundWidget(LoopingWidget):
            def step(self):
                return "round"
        """,
    "helper_widget.py": "VALUE = 1  # a module with no class named like the file\n",
}


@pytest.fixture
def widgets(tmp_path, monkeypatch):
    """A package of widget plugins: two base classes, one runnable widget, one helper module."""
    for name, source in PLUGINS.items():
        (tmp_path / "widgets").mkdir(exist_ok=True)
        (tmp_path / "widgets" / name).write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [module for module in sys.modules if module == "widgets" or module.startswith("widgets.")]:
        del sys.modules[name]


def test_only_classes_with_no_abstract_method_left_are_offered(widgets):
    from widgets.base_widget import BaseWidget

    assert available_names("widgets", "_widget", BaseWidget) == ["round"]
    assert find_class("widgets", "_widget", "round", BaseWidget, "--widget")().run() == "round"
    for name in ("looping", "base", "helper"):
        with pytest.raises(SargenError, match=f"^unknown --widget '{name}': choose one of round$"):
            find_class("widgets", "_widget", name, BaseWidget, "--widget")


def test_models_and_dataset_modes_offer_no_base_class():
    assert "step_trained" not in models.available_models() and "base" not in models.available_models()
    assert "base" not in data.available_dataset_modes() and "unaligned" in data.available_dataset_modes()
    for name in models.available_models():
        assert not inspect.isabstract(models.find_model_class(name))
    assert inspect.isabstract(models.step_trained_model.StepTrainedModel)
    with pytest.raises(SargenError, match="^unknown --model 'step_trained': choose one of .*ugatit"):
        models.find_model_class("step_trained")
