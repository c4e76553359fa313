"""One function per command: a typed config in, a result folder out. The CLI only parses options into these."""
