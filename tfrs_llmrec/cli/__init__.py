"""The `llmrec` command line and its `doctor` self-check."""
