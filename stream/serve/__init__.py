"""`lipstream serve`: live sessions over WebRTC to a browser, with a page, an HTTP API, events and metrics."""
