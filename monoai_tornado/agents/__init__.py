"""Agents: a model with tools, run in a loop whose every step is reported.

>>> from monoai_tornado.agents import Agent, tool
>>> from monoai_tornado.backends.demo import DemoBackend
>>> @tool
... def shout(text: str) -> str:
...     '''Return the text in capitals.'''
...     return text.upper()
>>> Agent("loud", DemoBackend(), tools=[shout]).tool_summaries()
[{'name': 'shout', 'description': 'Return the text in capitals.'}]
"""
from .agent import Agent
from .base import NativeAgent
from .builtin import calculator, current_utc_time, default_agents, word_count
from .monoai_adapter import MonoAIAgentAdapter, adapt_agent
from .tools import Tool, ToolArgumentsError, ToolError, as_tool, tool

__all__ = [
    "Agent",
    "MonoAIAgentAdapter",
    "NativeAgent",
    "Tool",
    "ToolArgumentsError",
    "ToolError",
    "adapt_agent",
    "as_tool",
    "calculator",
    "current_utc_time",
    "default_agents",
    "tool",
    "word_count",
]
