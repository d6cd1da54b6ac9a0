"""Training: the multitask objective over core.tasks, seeded randomness, the text scorer's encoder fine-tuning."""
