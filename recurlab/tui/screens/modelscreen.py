"""What the screens that drive a model share (Generate, Inspector): opening it in a worker.

    class GenerateScreen(ModelScreen):
        R_SLIDER = "#gen-r"          # the screen's r slider: range 1..max_r(r_mean), set to r_mean
        EXAMPLES_PER_LEVEL = 1       # held-out task examples handed to on_model
        def show_status(self, text): ...          # where "loading ..." and failures appear
        def on_model(self, lm, examples): ...     # the model is open (lm: engine.OpenedModel)

On every visit the screen compares the model the app points at (--model, else the current run
and its latest checkpoint) with the one it holds and opens the new one in a background thread,
through the app's ModelCache and the engine's open_model.
"""

from __future__ import annotations

from textual import work

from recurlab.config import slider_max_r
from recurlab.tui.model_cache import heldout_examples, model_key
from recurlab.tui.screens.base import LabScreen
from recurlab.tui.widgets.slider import Slider


class ModelScreen(LabScreen):
    R_SLIDER = ""
    EXAMPLES_PER_LEVEL = 1

    def __init__(self):
        super().__init__()
        self.lm = None  # the engine's OpenedModel once loaded
        self._model_key = None

    def show_status(self, text: str) -> None:
        raise NotImplementedError

    def on_model(self, lm, examples: list[tuple[str, str]]) -> None:
        raise NotImplementedError

    def on_screen_resume(self) -> None:
        path = self.app.model_dir()
        key = model_key(path)
        if key != self._model_key:
            self._model_key = key
            if path is None:
                self.show_status("no run selected: pick one on the Runs screen (1, enter), or start with --model")
            else:
                self.show_status(f"loading the model of {path.name} ...")
                self.load_model(path)

    @work(thread=True, exclusive=True, group="model-load")
    def load_model(self, path) -> None:
        try:
            lm = self.app.model_cache.get(path)
            examples = heldout_examples(lm, self.EXAMPLES_PER_LEVEL)
        except Exception as exc:  # a deleted run or a broken folder becomes a notice
            self.app.call_from_thread(self.report, exc, "loading the model")
            self.app.call_from_thread(self.show_status, f"could not load {path} (the reason is in the error line below)")
            return
        self.app.call_from_thread(self._loaded, lm, examples)

    def _loaded(self, lm, examples) -> None:
        self.lm = lm
        slider = self.query_one(self.R_SLIDER, Slider)
        slider.set_range(1, slider_max_r(lm.r_mean))
        slider.value = lm.r_mean
        self.on_model(lm, examples)
