"""A model held to 10 requests a minute and 10,000 tokens an hour per user, with the spec's
user validator (user_* ids as they are, admin_* normalized to user_*, anything else refused
and limited by IP address).

    python examples/rate_limited_app.py                  # --port 8080 for another port
    curl -si -X POST localhost:8000/model -d '{"prompt":"hi","user_id":"user_1"}' | grep -i ratelimit
    curl -s localhost:8000/rate-limit/stats/user_1
"""
import argparse

from monoai_tornado import Application, DemoBackend
from monoai_tornado.ratelimit import Limit, RateLimiter


def my_user_validator(user_id: str):
    if user_id.startswith("user_"):
        return True
    if user_id.startswith("admin_"):
        return f"user_{user_id[6:]}"  # normalized: admin_7 shares user_7's budget
    return False


def build_app() -> Application:
    limiter = RateLimiter([
        Limit("request", 10, "minute"),
        Limit("token", 10_000, "hour"),
    ])
    return Application("Rate Limited App", model=DemoBackend(), rate_limiter=limiter,
                       user_validator=my_user_validator)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve the demo model under rate limits.")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    build_app().serve(port=parser.parse_args().port)
