"""What runs cost: dated price tables (tokens, text-to-speech) and admins' overrides."""
