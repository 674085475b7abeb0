"""Where speech comes from: text through a TTS engine, audio files, avatar files."""
