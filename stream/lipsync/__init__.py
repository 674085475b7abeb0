"""Lip-sync: the Wav2Lip model and its fast form, the procedural mouth, and the shared worker."""
