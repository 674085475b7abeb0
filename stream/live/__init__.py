"""Live sessions: endless, idle between utterances, interrupted at once."""
