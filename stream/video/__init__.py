"""Pictures: the prepared avatar, face boxes, pasting mouths back, H.264 encoding."""
