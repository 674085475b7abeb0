"""Framework adapters: each wraps a `stream.Session` for a framework's own interface and adds no
second pipeline. Each needs its extra: `pip install 'lipstream[livekit]'`, `'lipstream[pipecat]'`."""

AGENT_NAME = "lipstream-avatar"  # the name agents dispatch to `lipstream worker` (LipstreamRemoteAvatar's default)
