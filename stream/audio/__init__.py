"""The one clock and the audio features on it: resampling, Wav2Lip's mel, frame scheduling."""
