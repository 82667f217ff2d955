"""Looped-model folders beside recurlab's own runs: Huginn-0125, Ouro and retrofitted Llama models.

Every family maps onto the same RecurrentLM (see recurlab.model), so the engine, traces, sweeps and
the TUI need nothing per family. A family module says whether a folder is its own (`claims`, no
torch: config.json and the weight headers only) and reads its config.json into a FolderSpec:
`huginn` (Huginn-0125), `ouro` (Ouro) and `retrofit` (retrofitted recurrence, which keeps Huginn's
model type and is told apart by its tensors; it also shapes retrofit training from a Llama folder).
`tensors` reads the weights, `folder` the tokenizer and a RunConfig, `export` writes a run in
Huginn's format and `writers` writes random folders of every format for tests and benchmarks.
Opening a folder is the engine's door: recurlab.engine.open_model, whose registry of families
(recurlab.engine.loading.FAMILIES) uses these modules.
"""
