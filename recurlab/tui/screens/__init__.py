"""The screens of the recurlab TUI, one module each; `base.LabScreen` holds what they share."""
