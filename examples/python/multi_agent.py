"""Multi-agent: two agents, each its own async flow, run at the same time and
talk over queues. The hinter knows a secret word and gives hints; the guesser
guesses from them; the hinter judges each guess, until the word is found or
after five hints.

    python examples/python/multi_agent.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from minllm import AsyncFlow, AsyncNode

from model import Model, Reply, Request

ROUNDS = 5
Shared = dict[str, Any]
HINTS = ["It stands by the sea.", "It shines a bright light at night.", "Ships watch for it near the rocks."]
VOCABULARY = {"beach": ["sea", "sand"], "lamp": ["light", "bright"],
              "lighthouse": ["sea", "light", "ships", "rocks", "tall"], "harbour": ["ships", "sea"]}


class Give(AsyncNode):
    """The hinter: writes a hint and sends it."""

    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model

    async def prep_async(self, shared: Shared) -> tuple[str, list[str]]:
        return shared["secret"], list(shared["hints"])

    async def exec_async(self, prep_res: tuple[str, list[str]]) -> str:
        secret, hints = prep_res
        system = {"role": "system", "content": f"You give hints for the secret word `{secret}` without saying it."}
        asked = {"role": "user", "content": f"Hints so far: {' / '.join(hints)}. Give hint number {len(hints) + 1}."}
        return (await self.model.chat_async([system, asked])).content

    async def post_async(self, shared: Shared, prep_res: Any, exec_res: str) -> None:
        print(f"hinter: {exec_res}")
        shared["hints"].append(exec_res)
        await shared["to_guesser"].put(("hint", exec_res))


class Judge(AsyncNode):
    """The hinter: waits for the guess and judges it."""

    async def prep_async(self, shared: Shared) -> str:
        guess: str = await shared["from_guesser"].get()
        return guess

    async def post_async(self, shared: Shared, prep_res: str, exec_res: Any) -> str:
        shared["guesses"].append(prep_res)
        shared["found"] = prep_res.strip().lower() == shared["secret"]
        if shared["found"] or len(shared["hints"]) >= ROUNDS:
            await shared["to_guesser"].put(("over", shared["found"]))
            return "over"
        return "again"


class Listen(AsyncNode):
    """The guesser: waits for what the hinter says."""

    async def prep_async(self, shared: Shared) -> tuple[str, Any]:
        said: tuple[str, Any] = await shared["from_hinter"].get()
        return said

    async def post_async(self, shared: Shared, prep_res: tuple[str, Any], exec_res: Any) -> str:
        kind, value = prep_res
        if kind == "over":
            shared["found"] = value
            return "over"
        shared["hints"].append(value)
        return "hint"


class Guess(AsyncNode):
    """The guesser: guesses from the hints and sends the guess."""

    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model

    async def prep_async(self, shared: Shared) -> tuple[list[str], list[str]]:
        return list(shared["hints"]), list(shared["guesses"])

    async def exec_async(self, prep_res: tuple[list[str], list[str]]) -> str:
        hints, tried = prep_res
        system = {"role": "system", "content": "Guess the secret word from the hints. Answer with one word."}
        asked = {"role": "user", "content": f"Hints: {' / '.join(hints)}. Wrong guesses so far: {', '.join(tried)}."}
        return (await self.model.chat_async([system, asked])).content.strip().lower()

    async def post_async(self, shared: Shared, prep_res: Any, exec_res: str) -> None:
        print(f"guesser: {exec_res}?")
        shared["guesses"].append(exec_res)
        await shared["to_hinter"].put(exec_res)


class Over(AsyncNode):
    async def exec_async(self, prep_res: Any) -> None:
        return None


def script(request: Request) -> Reply:
    """The offline models: the hinter's hints in order; the guesser's word of its
    vocabulary that fits most hints and was not tried."""
    asked = request.last_user()
    if "Give hint number" in asked:
        n = int(asked.rsplit("hint number ", 1)[1].rstrip("."))
        return Reply(HINTS[n - 1] if n <= len(HINTS) else "It is tall and has a lamp.")
    lower = asked.lower()
    tried = lower.split("wrong guesses so far:", 1)[1].replace(",", " ").replace(".", " ").split()
    fits = [(sum(k in lower for k in keys), -len(keys), i, w) for i, (w, keys) in enumerate(VOCABULARY.items()) if w not in tried]
    return Reply(max(fits)[3] if fits else "pass")


async def play(secret: str, model: Model) -> tuple[Shared, Shared]:
    to_guesser: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    to_hinter: asyncio.Queue[str] = asyncio.Queue()
    give, judge = Give(model), Judge()
    give >> judge
    judge - "again" >> give
    judge - "over" >> Over()
    listen, guess = Listen(), Guess(model)
    listen - "hint" >> guess >> listen
    listen - "over" >> Over()
    hinter: Shared = {"secret": secret, "hints": [], "guesses": [], "to_guesser": to_guesser, "from_guesser": to_hinter}
    guesser: Shared = {"hints": [], "guesses": [], "from_hinter": to_guesser, "to_hinter": to_hinter}
    # The two agents run at the same time, each its own flow.
    await asyncio.gather(AsyncFlow(start=give, max_steps=100).run_async(hinter),
                         AsyncFlow(start=listen, max_steps=100).run_async(guesser))
    return hinter, guesser


if __name__ == "__main__":
    h, _ = asyncio.run(play("lighthouse", Model.from_env(script)))
    print(f"`{h['secret']}` {'found' if h['found'] else 'not found'} after {len(h['hints'])} hints")
