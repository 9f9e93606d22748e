"""An agent with your own tools, served at /agent/shop.

    python examples/agent_with_tools.py                  # --port 8080 for another port
    curl -s -X POST localhost:8000/agent/shop -d '{"prompt":"what is the price of bread?"}'
    curl -s -X POST localhost:8000/agent/shop -d '{"prompt":"what is 3*19.99?"}'
    python -m monoai_tornado --agents examples.agent_with_tools:build_agents   # the same from the CLI

The demo model calls ``price_of`` when the prompt names it (``price of bread``), so the tool
can be watched working offline; a real model (``--backend openai``) decides for itself.
"""
import argparse
from monoai_tornado import Application, DemoBackend
from monoai_tornado.agents import Agent, tool
from monoai_tornado.agents.builtin import calculator

PRICES = {"apple": 0.5, "bread": 2.25, "coffee": 7.9}


@tool
def price_of(item: str) -> float:
    """Look up the unit price of an item in the shop.

    Args:
        item: the item's name, e.g. "bread".
    """
    if item not in PRICES:
        raise ValueError(f"no such item: {item}")
    return PRICES[item]


def build_agents(model=None):
    model = model or DemoBackend()
    return [Agent("shop", model, tools=[price_of, calculator],
                  instructions="You are the shop's assistant. Use price_of and calculator to answer.")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve the shop agent.")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    model = DemoBackend()
    Application("Shop", model=model, agents=build_agents(model)).serve(port=parser.parse_args().port)
