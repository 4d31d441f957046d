"""The embedded geographic knowledge base and the one-command demo."""
