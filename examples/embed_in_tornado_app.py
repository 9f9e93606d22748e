"""Mount monoai_tornado's endpoints under /ai inside your own Tornado application.

    python examples/embed_in_tornado_app.py
    curl -s -X POST localhost:8000/ai/model -d '{"prompt":"hi"}'
"""
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
    asyncio.run(main())
