"""core.model.bert: the selector's own BERT equals transformers' BertModel on the same weights."""
import pytest
import torch
from transformers import BertConfig, BertModel

from core.model.bert import Bert, BertSettings, load_backbone_weights

CONFIG = dict(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
              intermediate_size=48, max_position_embeddings=40, type_vocab_size=2, pad_token_id=0)


def pair(**overrides):
    torch.manual_seed(0)
    config = BertConfig(**{**CONFIG, **overrides})
    reference = BertModel(config, add_pooling_layer=False).eval()
    ours = Bert(BertSettings.from_dict(config.to_dict())).eval()
    load_backbone_weights(ours, reference.state_dict())
    return reference, ours


@pytest.mark.parametrize("activation", ["gelu", "relu", "gelu_new"])
def test_outputs_equal_transformers(activation):
    reference, ours = pair(hidden_act=activation)
    ids = torch.randint(1, 50, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    expected = reference(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    got = ours(input_ids=ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-4)


def test_embeddings_and_custom_positions_equal_transformers():
    reference, ours = pair()
    embeds = torch.randn(2, 5, 32)
    positions = torch.tensor([[0, 1, 2, 30, 31], [0, 1, 2, 3, 4]])
    expected = reference.embeddings(inputs_embeds=embeds, position_ids=positions, token_type_ids=None)
    torch.testing.assert_close(ours.embeddings(inputs_embeds=embeds, position_ids=positions), expected)
    layer_in = torch.randn(2, 5, 32)
    additive = torch.zeros(2, 1, 5, 5)
    additive[0, :, :, 4] = torch.finfo(torch.float32).min
    torch.testing.assert_close(ours.encoder.layer[0](layer_in, additive),
                               reference.encoder.layer[0](layer_in, attention_mask=additive))


def test_training_mode_uses_dropout_and_gradients_flow():
    _, ours = pair()
    ours.train()
    ids = torch.randint(1, 50, (2, 8))
    first, second = ours(input_ids=ids), ours(input_ids=ids)
    assert not torch.allclose(first, second)  # dropout is active
    first.sum().backward()
    assert ours.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


def test_state_dict_keys_match_bert_model_without_pooler():
    reference, ours = pair()
    assert set(ours.state_dict()) == set(reference.state_dict())


def test_weights_that_do_not_fit_are_named():
    reference, ours = pair()
    state = reference.state_dict()
    state["pooler.dense.weight"] = torch.zeros(32, 32)  # ignored: the selector has no pooler
    load_backbone_weights(ours, state)
    del state["encoder.layer.2.output.dense.bias"]
    with pytest.raises(RuntimeError, match="encoder.layer.2.output.dense.bias"):
        load_backbone_weights(ours, state)
    _, small = pair(num_hidden_layers=2)
    with pytest.raises(RuntimeError, match="unexpected.*encoder.layer.2"):
        load_backbone_weights(small, reference.state_dict())


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="hidden_size=30"):
        BertSettings(vocab_size=10, hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="hidden_act='tanhshrink'"):
        BertSettings(vocab_size=10, hidden_size=32, num_attention_heads=4, hidden_act="tanhshrink")
    with pytest.raises(ValueError, match="relative_key"):
        BertSettings.from_dict({**CONFIG, "position_embedding_type": "relative_key"})
