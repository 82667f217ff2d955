"""Real text for training: sources through `datasets`, a byte-level BPE, packing, caching.

    from recurlab.text.data import TextData
    data = TextData(cfg, run)            # cfg.data.source is "hub" or "local"
    idx, targets = data.train_batch(step=1, n=8)
    data.eval_batches(); data.eval_row(...)   # validation loss and bits per byte (recurlab.engine.evaluate)

Modules: sources (open a hub dataset or local files, pull the text out of rows), bpe (the
tokenizer), specials (which special tokens a model folder puts around a sequence), cache (token ids of a finite corpus in memory-mapped files), stream (on-the-fly
tokenization of a streamed hub dataset in a background process), data (TextData itself).
"""
