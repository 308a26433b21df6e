"""codexd's version; imported on every command, so it imports nothing."""

CODEXD_VERSION = "0.1.0"
CLIENT_NAME = "codexd"
