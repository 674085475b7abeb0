"""Where frames go: the MP4 file."""
