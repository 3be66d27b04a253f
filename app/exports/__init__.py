"""Exports: Hugging Face datasets, W&B artifacts and run metrics, Mistral fine-tuning JSONL."""
