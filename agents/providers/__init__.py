"""Model providers: a local llama.cpp model and the Mistral API."""
