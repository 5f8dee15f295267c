"""Workflow: outline, then draft, then review; a failed review sends the draft
back with the reviewer's notes, three rounds at most, then the flow gives up.

    python examples/python/workflow.py "the waggle dance of bees"
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from minllm import Flow, Node

from model import Model, Reply, Request

ROUNDS = 3
Shared = dict[str, Any]
REVIEW = {"type": "object", "properties": {"accept": {"type": "boolean"}, "notes": {"type": "string"}},
          "required": ["accept", "notes"], "additionalProperties": False}


class Outline(Node):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model

    def prep(self, shared: Shared) -> str:
        topic: str = shared["topic"]
        return topic

    def exec(self, prep_res: str) -> list[str]:
        asked = f"Write an outline of three short points for a paragraph on: {prep_res}. One point per line."
        lines = self.model.chat([{"role": "user", "content": asked}]).content.splitlines()
        points = [re.sub(r"^[\d.\-* ]+", "", line).strip() for line in lines]
        return [p for p in points if p]

    def post(self, shared: Shared, prep_res: str, exec_res: list[str]) -> None:
        print("outline:", " | ".join(exec_res))
        shared["outline"] = exec_res


class Draft(Node):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model

    def prep(self, shared: Shared) -> str:
        asked = f"Write one paragraph on {shared['topic']} following this outline:\n- " + "\n- ".join(shared["outline"])
        if shared["notes"]:
            asked += f"\n\nThe reviewer's notes on the last draft: {shared['notes'][-1]}"
        return asked

    def exec(self, prep_res: str) -> str:
        return self.model.chat([{"role": "user", "content": prep_res}]).content

    def post(self, shared: Shared, prep_res: str, exec_res: str) -> None:
        print(f"draft {len(shared['notes']) + 1}: {len(exec_res.split())} words")
        shared["draft"] = exec_res


class Review(Node):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model

    def prep(self, shared: Shared) -> str:
        draft: str = shared["draft"]
        return draft

    def exec(self, prep_res: str) -> dict[str, Any]:
        system = {"role": "system", "content": "You review paragraphs: accept one that is clear and ends with a conclusion."}
        review: dict[str, Any] = json.loads(self.model.chat([system, {"role": "user", "content": prep_res}], schema=REVIEW).content)
        return review

    def post(self, shared: Shared, prep_res: str, exec_res: dict[str, Any]) -> str:
        print(f"review: {'accepted' if exec_res['accept'] else 'revise'} ({exec_res['notes']})")
        shared["notes"].append(exec_res["notes"])
        if exec_res["accept"]:
            shared["outcome"] = "published"
            return "accept"
        if len(shared["notes"]) >= ROUNDS:
            shared["outcome"] = "gave up"
            return "give_up"
        return "revise"


class Done(Node):
    def prep(self, shared: Shared) -> str:
        outcome: str = shared["outcome"]
        return outcome

    def exec(self, prep_res: str) -> None:
        print(f"{prep_res}.")


def script(request: Request) -> Reply:
    """The offline model: an outline from the topic, a draft that forgets its
    conclusion until the reviewer asks for one, a reviewer who asks."""
    asked = request.last_user()
    if asked.startswith("Write an outline"):
        topic = asked.split(": ", 1)[1].removesuffix(". One point per line.")
        return Reply(f"1. What {topic} means\n2. How {topic} works\n3. Why {topic} matters")
    if asked.startswith("Write one paragraph"):
        points = [line[2:] for line in asked.splitlines() if line.startswith("- ")]
        text = " ".join(f"{p} is worth a sentence." for p in points)
        return Reply(text + (" In short, it all fits together." if "reviewer's notes" in asked else ""))
    accept = "In short" in asked
    return Reply(json.dumps({"accept": accept, "notes": "clear, with a conclusion" if accept else "add a one-sentence conclusion"}))


def write(topic: str, model: Model) -> Shared:
    outline, draft, review, done = Outline(model), Draft(model), Review(model), Done()
    outline >> draft >> review
    review - "revise" >> draft
    review - "accept" >> done
    review - "give_up" >> done
    shared: Shared = {"topic": topic, "notes": []}
    Flow(start=outline, max_steps=20).run(shared)
    return shared


if __name__ == "__main__":
    result = write(sys.argv[1] if len(sys.argv) > 1 else "the waggle dance of bees", Model.from_env(script))
    print(result["draft"])
