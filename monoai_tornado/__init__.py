"""monoai_tornado: serve an LLM model and its agents over HTTP, SSE and WebSocket with Tornado.

    from monoai_tornado import Application, DemoBackend
    Application("My App", model=DemoBackend()).serve(port=8000)
"""
from .app import Application
from .backends.base import Backend, CallOptions, ReportedUsage, TextDelta, TextDeltas, ToolCall, ToolCallsRequested
from .backends.demo import DemoBackend
from .errors import ApiError, BackendError, BackendTimeout
from .usage import TokenCounter, Usage
from .version import __version__

__all__ = [
    "Application", "Backend", "CallOptions", "DemoBackend", "TextDelta", "TextDeltas", "ToolCall", "ToolCallsRequested",
    "ReportedUsage", "ApiError", "BackendError", "BackendTimeout", "TokenCounter", "Usage",
    "__version__",
]
