"""spamtune: turn a pretrained decoder LLM into a text classifier."""
