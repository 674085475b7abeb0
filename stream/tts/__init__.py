"""Text to speech: the engine contract (`engine`), the factory that picks one (`registry`), the
embedded eSpeak NG voice, Coqui TTS, and the chunker that cuts text into pieces to speak."""
