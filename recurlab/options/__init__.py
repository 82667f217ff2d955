"""Options of generation and their defaults, with no torch, so that the CLI's help and the TUI's
screens can show them before a model (and torch) loads.

    from recurlab.options.generate import GenerateOptions, parse_exit, EXIT_CRITERIA, DEVICE
    from recurlab.options.parallel import ParallelConfig, parse_sampler, SPEC_HELP

`generate` holds the options of one generation call (exits, speculative decoding, the device and
r defaults); `parallel` the parallel sampler's. The engine (recurlab.engine) re-exports the public
names; this package imports nothing of recurlab but the user errors.
"""
