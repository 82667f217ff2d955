"""The Sweep heatmap's data: sweeps of one checkpoint merged into level x r, and its colour scale."""

from recurlab.sweep import SweepResult
from recurlab.sweep import level_grid
from recurlab.tui.widgets.heatmap import colour, render_grid


def test_merge_takes_every_sweep_of_the_checkpoint_and_later_ones_win():
    own = SweepResult("a", 100, [{"r": 1, "loss": 1.0, "acc@1": 0.5, "acc@2": 0.1}, {"r": 8, "loss": 0.1, "acc@1": 1.0, "acc@2": 0.9}])
    harder = SweepResult("a", 100, [{"r": 8, "loss": 2.0, "acc@3": 0.4}, {"r": 32, "loss": 2.0, "acc@3": 0.6}])
    again = SweepResult("a", 100, [{"r": 8, "loss": 2.0, "acc@3": 0.45}])
    other_step = SweepResult("a", 50, [{"r": 64, "loss": 2.0, "acc@9": 0.0}])
    grid = level_grid([own, harder, other_step, again], step=100)
    assert grid.levels == [1, 2, 3] and grid.rs == [1, 8, 32]
    assert grid.acc == {(1, 1): 0.5, (2, 1): 0.1, (1, 8): 1.0, (2, 8): 0.9, (3, 8): 0.45, (3, 32): 0.6}
    text = render_grid(grid, trained={1, 2}, r_mean=8).plain
    assert "\n▸level 3      ·  45.0  60.0\n" in text
    assert "\n level 1   50.0 100.0     ·\n" in text
    assert text.startswith("       r      1    8▾    32\n")


def test_colour_runs_from_red_through_amber_to_green():
    assert colour(0.0) == (110, 20, 25)
    assert colour(0.5) == (190, 140, 20)
    assert colour(1.0) == (30, 150, 60)
    assert colour(0.25) == (150, 80, 22)  # halfway between red and amber, rounded
