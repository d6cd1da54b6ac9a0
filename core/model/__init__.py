"""The selector model: MMBERT modules and heads, its config, the BERT it runs on, tokenizer, checkpoints,
input layout (features), the frozen image encoder and the sticker bank."""
