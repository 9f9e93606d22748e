"""Working examples in the OpenAPI document, so that ``/docs`` "Try it out" succeeds as it comes.

Without them Swagger UI fills a body from the schema (``user_id: "string"``, ``max_tokens: 1``,
a ``tool_choice`` without tools), which the server rightly refuses. :func:`add_examples` gives
every request body it knows, and the path parameters, a value this very server accepts.
"""
from __future__ import annotations

from typing import Any, Sequence

PROMPT = "Say hello in five words"


def request_examples(model: str | None, agent: str | None) -> dict[str, dict[str, Any]]:
    """The request body of each operation (by ``operationId``) that this server answers with 2xx."""
    prompt = {"prompt": PROMPT, "max_tokens": 64}
    examples: dict[str, dict[str, Any]] = {
        "askModel": prompt, "askModelStream": prompt,
        "runAgent": {"prompt": "What is 12 * 7?"}, "runAgentStream": {"prompt": "What is 12 * 7?"},
        "validateUser": {"user_id": "alice"},
        "createApiKey": {"user": "alice", "name": "laptop", "limits": ["60/minute"]},
    }
    chat_model = model if model is not None else None if agent is None else f"agent/{agent}"
    if chat_model is not None:
        examples["createChatCompletion"] = {"model": chat_model, "max_tokens": 64,
                                            "messages": [{"role": "user", "content": PROMPT}]}
        examples["createResponse"] = {"model": chat_model, "input": PROMPT, "max_output_tokens": 64}
        examples["createMessage"] = {"model": chat_model, "max_tokens": 64,
                                     "messages": [{"role": "user", "content": PROMPT}]}
        examples["countMessageTokens"] = {"model": chat_model, "messages": [{"role": "user", "content": PROMPT}]}
    return examples


def add_examples(doc: dict[str, Any], model: str | None, agents: Sequence[str]) -> dict[str, Any]:
    """``doc`` with an ``example`` on every JSON request body and path parameter it knows."""
    agent = sorted(agents)[0] if agents else None
    bodies = request_examples(model, agent)
    parameters = {"name": agent, "user_id": "alice"}
    for path_item in doc.get("paths", {}).values():
        operations = [operation for operation in path_item.values() if isinstance(operation, dict)]
        for parameter in [*path_item.get("parameters", ()), *(p for o in operations for p in o.get("parameters", ()))]:
            value = parameters.get(parameter.get("name")) if parameter.get("in") == "path" else None
            if value is not None:
                parameter["example"] = value
        for operation in operations:
            example = bodies.get(operation.get("operationId", ""))
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if example is not None and content is not None:
                content["example"] = example
    return doc
