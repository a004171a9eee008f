"""The subscriber store, tokens, signup validation and the web app."""
