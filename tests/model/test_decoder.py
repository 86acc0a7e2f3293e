"""ReviewDecoder (model.decoder): shapes, invalid sizes, where the visual context enters, config."""

from __future__ import annotations

import numpy as np
import pytest

from model.decoder import ReviewDecoder

B, T, V, C, D = 2, 5, 11, 6, 4


def built_decoder(seed: int = 0) -> ReviewDecoder:
    decoder = ReviewDecoder(V, embed_dim=8, hidden=12, context_dim=7)
    decoder.build((None, None), (None, C), (None, D), (None, D))
    rng = np.random.default_rng(seed)
    for weight in decoder.weights:  # fixed, non-zero weights (the context bias starts at zero)
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype(np.float32))
    return decoder


def inputs(seed: int = 1):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, V, size=(B, T)).astype(np.int32)
    tokens[:, 0] = 1  # BOS
    f = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    return tokens, f(B, C), f(B, D), f(B, D)


def test_output_is_next_token_logits_b_t_v() -> None:
    decoder = built_decoder()
    out = np.asarray(decoder(*inputs()))
    assert out.shape == (B, T, V) and np.isfinite(out).all()
    tokens, visual, users, items = inputs()
    assert np.asarray(decoder(tokens[:, :2], visual, users, items)).shape == (B, 2, V)


@pytest.mark.parametrize("name", ["vocab_size", "embed_dim", "hidden", "context_dim"])
def test_invalid_sizes_raise(name: str) -> None:
    sizes = {"vocab_size": V, "embed_dim": 8, "hidden": 12, "context_dim": 7} | {name: 0}
    with pytest.raises(ValueError, match=f"{name} must be >= 1, got 0"):
        ReviewDecoder(**sizes)


def test_visual_input_changes_logits_after_t0_but_not_at_t0() -> None:
    # c_0 = 0 (the code sets context = zeros at t = 0; h_0 depends on user and item only), so step 0
    # cannot see the image; from t = 1 on c_t = ReLU(g V_v v + (1 - g)(V_p p + V_q q) + b) does.
    decoder = built_decoder()
    tokens, visual, users, items = inputs()
    base = np.asarray(decoder(tokens, visual, users, items))
    other = np.asarray(decoder(tokens, visual + 3.0, users, items))
    np.testing.assert_array_equal(other[:, 0], base[:, 0])
    assert np.abs(other[:, 1:] - base[:, 1:]).max(axis=-1).min() > 1e-4  # every later step of every row moves


def test_user_and_item_reach_the_first_step_through_the_initial_state() -> None:
    decoder = built_decoder()
    tokens, visual, users, items = inputs()
    base = np.asarray(decoder(tokens, visual, users, items))
    assert np.abs(np.asarray(decoder(tokens, visual, -users, items))[:, 0] - base[:, 0]).max() > 1e-4
    assert np.abs(np.asarray(decoder(tokens, visual, users, -items))[:, 0] - base[:, 0]).max() > 1e-4


def test_logits_at_t_do_not_depend_on_later_tokens() -> None:
    decoder = built_decoder()
    tokens, visual, users, items = inputs()
    changed = tokens.copy()
    changed[:, 3:] = (changed[:, 3:] + 1) % V
    base, other = np.asarray(decoder(tokens, visual, users, items)), np.asarray(decoder(changed, visual, users, items))
    np.testing.assert_array_equal(other[:, :3], base[:, :3])
    assert np.abs(other[:, 3:] - base[:, 3:]).max() > 1e-4


def test_get_config_from_config_round_trip() -> None:
    decoder = built_decoder()
    config = decoder.get_config()
    assert {k: config[k] for k in ("vocab_size", "embed_dim", "hidden", "context_dim")} == {
        "vocab_size": V,
        "embed_dim": 8,
        "hidden": 12,
        "context_dim": 7,
    }
    clone = ReviewDecoder.from_config(config)
    clone.build((None, None), (None, C), (None, D), (None, D))
    clone.set_weights(decoder.get_weights())
    np.testing.assert_allclose(np.asarray(clone(*inputs())), np.asarray(decoder(*inputs())), rtol=1e-6)
