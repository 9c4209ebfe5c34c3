"""Decoder presets: parameter counts against the published ones, and declared decoders."""

from __future__ import annotations

import pytest

from simtopo import ConfigError
from simtopo.workload.decoders import decoder_from_dict, load_model, preset_names

PUBLISHED = {
    # total parameters as the model cards or checkpoint indexes state them
    "llama-2-7b": 6.74e9, "llama-2-13b": 13.0e9, "llama-2-70b": 6.90e10,
    "llama-3-8b": 8.03e9, "llama-3-70b": 70.6e9, "llama-3.1-405b": 4.06e11,
    "mistral-7b": 7.24e9, "gpt-j-6b": 6.05e9, "opt-2.7b": 2.65e9, "opt-6.7b": 6.66e9,
    "opt-13b": 12.85e9,
    # the model cards: Mixtral 46.7B; DeepSeek-MoE 16.4B
    "mixtral-8x7b": 46.7e9, "deepseek-moe-16b": 16.4e9,
    # BertModel as transformers counts it (with the pooler, which SQuAD does not use)
    "bert-base": 109_482_240, "bert-large": 335_141_888,
}


def test_every_preset_is_checked():
    assert set(preset_names()) == set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_within_one_percent(name):
    assert load_model(name).parameters() == pytest.approx(PUBLISHED[name], rel=0.01)


def test_llama_2_7b_by_hand():
    # embeddings 32000 x 4096 twice (untied); per layer: q, k, v, o 4 x 4096^2, a gated FFN
    # 3 x 4096 x 11008, two RMSNorms 2 x 4096; the final norm 4096
    per_layer = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    assert load_model("llama-2-7b").parameters() == 2 * 32000 * 4096 + 32 * per_layer + 4096


def test_opt_ties_its_head_and_learns_positions():
    m = load_model("opt-2.7b")
    assert m.tied_embeddings and m.lm_head_params() == 0
    # embed 50272 x 2560 + positions (2048 + 2) x 2560; every linear has a bias; LayerNorms
    h, f = 2560, 10240
    per_layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h
    assert m.parameters() == 50272 * h + 2050 * h + 32 * per_layer + 2 * h


def test_llama_2_70b_uses_grouped_query_attention():
    m = load_model("llama-2-70b")
    assert (m.heads, m.n_kv, m.d_head, m.kv_width) == (64, 8, 128, 1024)


def test_declared_decoder_from_yaml(tmp_path):
    path = tmp_path / "mini.yaml"
    path.write_text("decoder:\n  hidden: 256\n  layers: 2\n  heads: 4\n  kv_heads: 2\n"
                    "  ffn: 512\n  vocab: 1000\n  tied_embeddings: true\n")
    m = load_model(path)
    assert m.name == "mini"
    per_layer = 256 * (256 + 2 * 128) + 256 * 256 + 3 * 256 * 512 + 2 * 256
    assert m.parameters() == 1000 * 256 + 2 * per_layer + 256


@pytest.mark.parametrize(("data", "message"), [
    ({"hidden": 256, "layers": 2, "heads": 6, "kv_heads": 4, "ffn": 512, "vocab": 10},
     "heads (6) must be a multiple of kv_heads (4)"),
    ({"hidden": 250, "layers": 2, "heads": 4, "ffn": 512, "vocab": 10},
     "hidden (250) is not a multiple of heads (4); give head_dim"),
    ({"hidden": 256, "layers": 0, "heads": 4, "ffn": 512, "vocab": 10},
     "layers: expected greater than or equal to 1 (got 0)"),
])
def test_bad_decoders(data, message):
    with pytest.raises(ConfigError) as info:
        decoder_from_dict(data)
    assert message in str(info.value)


def test_unknown_model_names_the_presets():
    with pytest.raises(ConfigError) as info:
        load_model("llama-9")
    assert "unknown model 'llama-9' (expected a preset: llama-2-7b" in str(info.value)


def test_bert_large_by_hand():
    m = load_model("bert-large")
    h, f, layers = 1024, 4096, 24
    # q, k, v, o with biases; the FFN's two matrices with biases; two LayerNorms (gain, bias)
    per_layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h
    # word and position tables; the embedding LayerNorm counted as the final one; the QA head
    expected = 30522 * h + 512 * h + layers * per_layer + 2 * h + (2 * h + 2)
    assert m.encoder and m.parameters() == expected
    # the published BertModel count minus its pooler (h x h + h) and token-type table (2 x h),
    # plus the QA head: the same number
    assert m.parameters() == 335_141_888 - (h * h + h) - 2 * h + (2 * h + 2)
