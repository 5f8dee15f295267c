"""Parallel batch: one text translated into many languages at once, at most
three calls in flight (an AsyncParallelBatchNode, whose items share a semaphore);
the translations come back in the order of the languages.

    python examples/python/translate.py "Good morning, friend"
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import Any

from minllm import AsyncFlow, AsyncParallelBatchNode

from model import Model, Reply, Request

LIMIT = 3
LANGUAGES = ["French", "Spanish", "German", "Italian", "Portuguese", "Dutch"]
BOOK = {
    "French": {"good": "bon", "morning": "matin", "friend": "ami", "hello": "bonjour"},
    "Spanish": {"good": "buenos", "morning": "días", "friend": "amigo", "hello": "hola"},
    "German": {"good": "guten", "morning": "Morgen", "friend": "Freund", "hello": "hallo"},
    "Italian": {"good": "buon", "morning": "giorno", "friend": "amico", "hello": "ciao"},
    "Portuguese": {"good": "bom", "morning": "dia", "friend": "amigo", "hello": "olá"},
}


class Translate(AsyncParallelBatchNode):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model
        self.now = self.peak = 0

    async def prep_async(self, shared: dict[str, Any]) -> list[tuple[str, str]]:
        self.gate = asyncio.Semaphore(LIMIT)
        return [(language, shared["text"]) for language in shared["languages"]]

    async def exec_async(self, prep_res: tuple[str, str]) -> str:
        language, text = prep_res
        async with self.gate:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                system = {"role": "system", "content": f"Translate the user's text into {language}. Answer with the translation only."}
                return (await self.model.chat_async([system, {"role": "user", "content": text}])).content
            finally:
                self.now -= 1

    async def post_async(self, shared: dict[str, Any], prep_res: list[tuple[str, str]], exec_res: list[str]) -> None:
        shared["translations"] = [(language, text) for (language, _), text in zip(prep_res, exec_res)]
        shared["peak"] = self.peak


def script(request: Request) -> Reply:
    """The offline model: a phrase book for a few words, the rest kept."""
    language = re.sub(r"\..*", "", str(request.messages[0]["content"]).split(" into ", 1)[1])
    book = BOOK.get(language, {})

    def word(w: str) -> str:
        bare = re.sub(r"\W", "", w)
        return w.replace(bare, book[bare.lower()]) if bare.lower() in book else w

    return Reply(" ".join(word(w) for w in request.last_user().split(" ")))


async def translate(text: str, languages: list[str], model: Model) -> dict[str, Any]:
    shared: dict[str, Any] = {"text": text, "languages": languages}
    await AsyncFlow(start=Translate(model)).run_async(shared)
    return shared


if __name__ == "__main__":
    started = time.perf_counter()
    result = asyncio.run(translate(sys.argv[1] if len(sys.argv) > 1 else "Good morning, friend", LANGUAGES,
                                   Model.from_env(script)))
    for language, translation in result["translations"]:
        print(f"{language:>10}: {translation}")
    print(f"{len(result['translations'])} translations in {time.perf_counter() - started:.3f} s,"
          f" {result['peak']} calls at once at most (limit {LIMIT})")
