"""Widgets of the recurlab TUI: the navigation bar, a slider, the latent grid, the token stream."""
