"""FLOPs of truncated backpropagation and MFU against a hand computation for a tiny model at a
known depth and k, and the MFU a tiny training writes into its rows."""

from __future__ import annotations

import numpy as np
import pytest

from recurlab.config import ModelConfig, load_profile, to_yaml
from recurlab.flops import mfu, train_flops_per_token, train_flops_per_token_array
from recurlab.rundir import RunDir


def tiny_model() -> ModelConfig:
    # width 32, MLP 128 (4 x 32), one prelude, core and coda block, vocabulary 20
    return ModelConfig(n_embd=32, n_head=2, n_prelude=1, n_core=1, n_coda=1, vocab_size=20)


def test_train_flops_by_hand_at_depth_8_with_k_2():
    # by hand, per token, sequence length 16 (attention over 8 positions on average):
    #   a block: 2 * (4 * 32^2 + 3 * 32 * 128) = 32768 matmul FLOPs + 2 * 2 * 32 * 8 = 1024 attention -> 33792
    #   an iteration: the core block + the adapter 2 * (2 * 32) * 32 = 4096 -> 37888
    #   prelude + coda 2 * 33792 = 67584; head 2 * 32 * 20 = 1280
    # depth 8 with k = 2: 6 iterations without gradient (forward only), 2 with (3x), prelude, coda, head 3x
    with_grad = 3 * (67584 + 1280 + 2 * 37888)  # 433920
    without = 6 * 37888  # 227328
    assert train_flops_per_token(tiny_model(), n_no_grad=6, n_grad=2, seq_len=16) == with_grad + without == 661248
    # every iteration with gradient (the 6N habit) would say 3 * 371968 = 1115904
    assert train_flops_per_token(tiny_model(), n_no_grad=0, n_grad=8, seq_len=16) == 1115904
    # MFU at 1,000 tokens/s on a device of 1 GFLOP/s peak
    assert mfu(661248 * 1000, "cpu", peak_tflops=1e-3) == pytest.approx(0.661248)
    assert mfu(661248 * 1000, "cpu") is None  # no peak known for a CPU


def test_flops_columns_equal_the_scalar_formula():
    cfg = tiny_model()
    ng, g, seq = np.array([6, 0, 3, 7]), np.array([2, 2, 1, 2]), np.array([16, 16, 10, np.nan])
    got = train_flops_per_token_array(cfg, ng, g, seq)
    want = [train_flops_per_token(cfg, int(a), int(b), float(c)) for a, b, c in zip(ng[:3], g[:3], seq[:3])]
    assert got[:3].tolist() == want and np.isnan(got[3])  # a row without seq_len has no FLOPs
    fixed = ModelConfig(n_embd=32, n_head=2, n_prelude=1, n_core=1, n_coda=1, vocab_size=20, arch="fixed_depth")
    assert train_flops_per_token_array(fixed, [5], [3], [16])[0] == train_flops_per_token(fixed, 5, 3, 16)


def test_a_training_row_states_the_mfu_of_its_own_depth(tmp_path):
    from recurlab.train import train

    cfg = load_profile("tiny", ["train.max_steps=4", "train.eval_every=100", "train.checkpoint_every=100",
                                "hardware.peak_tflops=0.001"])
    run = RunDir.create(tmp_path, "m", to_yaml(cfg))
    assert train(run, cfg, device="cpu") == "finished"
    rows = run.read_metrics("train")
    assert len(rows) == 4
    for row in rows:
        flops = train_flops_per_token(cfg.model, row["r_no_grad"], row["r_grad"], row["seq_len"])
        # the row's tokens_per_s is this step's tokens over its step_time
        assert row["mfu"] == pytest.approx(flops * row["tokens_per_s"] / 1e9)
