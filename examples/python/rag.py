"""RAG: load the documents in examples/data, chunk them into passages, embed the
passages (a ParallelBatchNode, 8 passages a call), index them, retrieve the
passages closest to the question and answer from them with their sources.
Offline, embeddings are hashed word counts that really rank; with
``MINLLM_LLM_URL`` set, the API's embedding model.

    python examples/python/rag.py "How do bees find flowers?"
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from minllm import Flow, Node, ParallelBatchNode

from model import Model, Reply, Request, cosine, words

DATA = Path(__file__).resolve().parent.parent / "data"
TOP, PER_CALL = 3, 8
Shared = dict[str, Any]
Passage = tuple[str, str]  # (source, text)


class Load(Node):
    def exec(self, prep_res: Any) -> list[tuple[str, str]]:
        return [(p.stem, p.read_text()) for p in sorted(DATA.glob("*.txt"))]

    def post(self, shared: Shared, prep_res: Any, exec_res: list[tuple[str, str]]) -> None:
        shared["documents"] = exec_res


class Chunk(Node):
    def prep(self, shared: Shared) -> list[tuple[str, str]]:
        documents: list[tuple[str, str]] = shared["documents"]
        return documents

    def exec(self, prep_res: list[tuple[str, str]]) -> list[Passage]:
        passages: list[Passage] = []
        for name, text in prep_res:
            for n, paragraph in enumerate((p.strip() for p in text.split("\n\n") if p.strip()), start=1):
                passages.append((f"{name}#{n}", paragraph))
        return passages

    def post(self, shared: Shared, prep_res: Any, exec_res: list[Passage]) -> None:
        shared["passages"] = exec_res


class Embed(ParallelBatchNode):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5, max_workers=4)
        self.model = model

    def prep(self, shared: Shared) -> list[list[str]]:
        texts = [text for _, text in shared["passages"]]
        return [texts[i : i + PER_CALL] for i in range(0, len(texts), PER_CALL)]

    def exec(self, prep_res: list[str]) -> list[list[float]]:
        return self.model.embed(prep_res)

    def post(self, shared: Shared, prep_res: Any, exec_res: list[list[list[float]]]) -> None:
        shared["index"] = [vector for group in exec_res for vector in group]


class Retrieve(Node):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model

    def prep(self, shared: Shared) -> tuple[str, list[list[float]], list[Passage]]:
        return shared["question"], shared["index"], shared["passages"]

    def exec(self, prep_res: tuple[str, list[list[float]], list[Passage]]) -> list[tuple[float, Passage]]:
        question, index, passages = prep_res
        asked = self.model.embed([question])[0]
        scored = sorted(((cosine(asked, v), p) for v, p in zip(index, passages)), key=lambda s: -s[0])
        return scored[:TOP]

    def post(self, shared: Shared, prep_res: Any, exec_res: list[tuple[float, Passage]]) -> None:
        for score, (source, _) in exec_res:
            print(f"{score:.2f} {source}")
        shared["found"] = exec_res


class Answer(Node):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model

    def prep(self, shared: Shared) -> str:
        context = "\n".join(f"[{source}] {text}" for _, (source, text) in shared["found"])
        return f"Passages:\n{context}\n\nQuestion: {shared['question']}"

    def exec(self, prep_res: str) -> str:
        system = {"role": "system", "content": "Answer from the passages only, in two sentences, citing them as [source]."}
        return self.model.chat([system, {"role": "user", "content": prep_res}]).content

    def post(self, shared: Shared, prep_res: Any, exec_res: str) -> None:
        shared["answer"] = exec_res


def script(request: Request) -> Reply:
    """The offline model: the best passage's sentence that shares most words with the question, cited."""
    asked = request.last_user()
    keys = {w[:5] for w in words(asked.rsplit("Question: ", 1)[-1]) if len(w) > 3}
    first = next((line for line in asked.splitlines() if line.startswith("[")), "")
    source, _, text = first[1:].partition("] ")
    sentences = re.split(r"(?<=\.)\s+", text)
    best = max(sentences, key=lambda s: (sum(w[:5] in keys for w in words(s)), -len(s)))
    return Reply(f"{best.strip()} [{source}]")


def ask(question: str, model: Model) -> Shared:
    load, chunk, embed, retrieve, answer = Load(), Chunk(), Embed(model), Retrieve(model), Answer(model)
    load >> chunk >> embed >> retrieve >> answer
    shared: Shared = {"question": question}
    Flow(start=load).run(shared)
    return shared


if __name__ == "__main__":
    q = sys.argv[1] if len(sys.argv) > 1 else "How do bees find flowers?"
    print(f"Q: {q}\nA: {ask(q, Model.from_env(script))['answer']}")
