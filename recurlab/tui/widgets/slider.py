"""An integer slider for the keyboard and the mouse (Textual has none built in).

    yield Slider(1, 32, value=8, label="r", id="r")
    def on_slider_changed(self, event: Slider.Changed): event.value

left/right (or -/+) step by one, pgup/pgdn by a tenth of the range, home/end jump to the ends;
a click or a drag on the track sets the value under the pointer.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


class Slider(Widget, can_focus=True):
    BINDINGS = [
        Binding("left,minus", "step(-1)", "r -1", show=False),
        Binding("right,plus,equals_sign", "step(1)", "r +1", show=False),
        Binding("pagedown", "page(-1)", "r down a page", show=False),
        Binding("pageup", "page(1)", "r up a page", show=False),
        Binding("home", "jump(0)", "smallest r", show=False),
        Binding("end", "jump(1)", "largest r", show=False),
    ]
    DEFAULT_CSS = """
    Slider { height: 1; width: 1fr; }
    Slider:focus { background: $boost; }
    """

    value: reactive[int] = reactive(1)

    @dataclass
    class Changed(Message):
        slider: "Slider"
        value: int

        @property
        def control(self) -> "Slider":
            return self.slider

    def __init__(self, minimum: int, maximum: int, value: int | None = None, label: str = "", **kwargs):
        super().__init__(**kwargs)
        self.minimum, self.maximum, self.label = minimum, max(maximum, minimum), label
        self.set_reactive(Slider.value, self._clamp(minimum if value is None else value))
        self._dragging = False

    def _clamp(self, v: int) -> int:
        return min(max(int(v), self.minimum), self.maximum)

    def set_range(self, minimum: int, maximum: int) -> None:
        self.minimum, self.maximum = minimum, max(maximum, minimum)
        self.value = self._clamp(self.value)
        self.refresh()

    def validate_value(self, value: int) -> int:
        return self._clamp(value)

    def watch_value(self, value: int) -> None:
        self.post_message(self.Changed(self, value))

    def _prefix(self) -> str:
        return f"{self.label} " if self.label else ""

    def _suffix(self) -> str:
        return f" {self.value:>{len(str(self.maximum))}}/{self.maximum}"

    def _track_width(self) -> int:
        return max(self.size.width - len(self._prefix()) - len(self._suffix()), 3)

    def render(self) -> Text:
        width = self._track_width()
        span = max(self.maximum - self.minimum, 1)
        pos = round((self.value - self.minimum) / span * (width - 1))
        text = Text(self._prefix(), style="bold")
        text.append("━" * pos, style="bold cyan")
        text.append("●", style="bold yellow")
        text.append("─" * (width - pos - 1), style="dim")
        text.append(self._suffix(), style="bold")
        return text

    def action_step(self, delta: int) -> None:
        self.value = self._clamp(self.value + delta)

    def action_page(self, delta: int) -> None:
        self.value = self._clamp(self.value + delta * max((self.maximum - self.minimum) // 10, 1))

    def action_jump(self, end: int) -> None:
        self.value = self.maximum if end else self.minimum

    def _value_at(self, x: int) -> int | None:
        pos = x - len(self._prefix())
        width = self._track_width()
        if not 0 <= pos < width:
            return None
        return self._clamp(self.minimum + round(pos / max(width - 1, 1) * (self.maximum - self.minimum)))

    def on_mouse_down(self, event) -> None:
        value = self._value_at(event.x)
        if value is not None:
            self.value = value
            self._dragging = True
            self.capture_mouse()

    def on_mouse_move(self, event) -> None:
        if self._dragging:
            value = self._value_at(event.x)
            if value is not None:
                self.value = value

    def on_mouse_up(self, event) -> None:
        if self._dragging:
            self._dragging = False
            self.release_mouse()
