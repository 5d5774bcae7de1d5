"""ipc-edge-agent: camera streams in, motion clips and keyframes out, spooled for cloud search."""

__version__ = "0.1.0"
