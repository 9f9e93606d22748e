"""Answer ids (``chatcmpl-...``, ``msg_...``): unique within a process and across forked workers."""
from __future__ import annotations

import os

from monoai_tornado.dialects.anthropic import message_id
from monoai_tornado.handlers.openai_front import completion_id
from monoai_tornado.ids import SerialIds


def test_ids_are_unique_and_shaped_as_a_uuid_after_their_prefix():
    made = [completion_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(made_id.startswith("chatcmpl-") and len(made_id) == len("chatcmpl-") + 32 for made_id in made)
    assert all(int(made_id[len("chatcmpl-"):], 16) >= 0 for made_id in made[:10])
    assert message_id().startswith("msg_")


def test_a_forked_worker_never_gives_an_id_its_parent_or_sibling_gives():
    """``--processes N`` forks after the modules are imported: each worker draws its own part."""
    ids = SerialIds("x_")
    ids()  # the parent has given one before forking
    children = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its first ids, then out at once
            try:
                os.write(write, " ".join([ids(), completion_id(), message_id()]).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            children.append(pipe.read().split())
        os.waitpid(pid, 0)
    parents = [ids(), completion_id(), message_id()]
    for kind in range(3):
        made = [parents[kind]] + [child[kind] for child in children]
        assert len(set(made)) == 3, made
