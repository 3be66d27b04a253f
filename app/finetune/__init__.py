"""The fine-tune loop: JSONL from runs, a Mistral fine-tuning job, a model to run on."""
