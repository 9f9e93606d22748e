"""Mount monoai_tornado's endpoints under /ai inside your own Tornado application.

    python examples/embed_in_tornado_app.py              # --port 8080 for another port
    curl -s -X POST localhost:8000/ai/model -d '{"prompt":"hi"}'
"""
import argparse
import asyncio

import tornado.web

from monoai_tornado import Application, DemoBackend


class Home(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"app": "my own Tornado app", "ai": "/ai/model, /ai/model/stream, /ai/model/ws"})


async def main(port: int = 8000) -> None:
    ai = Application("Embedded AI", model=DemoBackend())
    app = tornado.web.Application([(r"/", Home), *ai.handlers("/ai")])
    app.listen(port, "127.0.0.1")
    print(f"serving on http://127.0.0.1:{port}/ (endpoints under /ai)")
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve the model under /ai beside your own handlers.")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    asyncio.run(main(parser.parse_args().port))
