"""The data layer: the MOD dataset (stickers, dialogues, splits), safe image loading, sticker emotions,
dialogue text, the sticker-id alignment check."""
