"""Supervisor: an inner agent flow (look up notes, then answer) runs as one node
of an outer flow, whose supervisor checks each answer against the notes and
sends the agent back with its feedback until it approves, three rounds at most.

    python examples/python/supervisor.py "How do bees find flowers?"
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from minllm import Flow, Node

from model import Model, Reply, Request, cosine, hashed

DATA = Path(__file__).resolve().parent.parent / "data"
ROUNDS = 3
Shared = dict[str, Any]
VERDICT = {"type": "object", "properties": {"grounded": {"type": "boolean"}, "feedback": {"type": "string"}},
           "required": ["grounded", "feedback"], "additionalProperties": False}


class LookUp(Node):
    def prep(self, shared: Shared) -> str:
        question: str = shared["question"]
        return question

    def exec(self, prep_res: str) -> str:
        asked = hashed(prep_res)
        passages = [p.strip() for path in sorted(DATA.glob("*.txt")) for p in path.read_text().split("\n\n") if p.strip()]
        return max(passages, key=lambda p: cosine(asked, hashed(p)))

    def post(self, shared: Shared, prep_res: str, exec_res: str) -> None:
        shared["notes"] = exec_res


class Respond(Node):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model

    def prep(self, shared: Shared) -> list[dict[str, Any]]:
        messages = [{"role": "system", "content": "Answer the question in one sentence."},
                    {"role": "user", "content": f"Notes: {shared['notes']}\n\nQuestion: {shared['question']}"}]
        if shared["feedback"]:
            messages.append({"role": "user", "content": f"Your last answer was rejected: {shared['feedback'][-1]}"})
        return messages

    def exec(self, prep_res: list[dict[str, Any]]) -> str:
        return self.model.chat(prep_res).content

    def post(self, shared: Shared, prep_res: Any, exec_res: str) -> None:
        print(f"agent: {exec_res}")
        shared["answer"] = exec_res


class Supervise(Node):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model

    def prep(self, shared: Shared) -> str:
        return f"Notes: {shared['notes']}\n\nAnswer: {shared['answer']}"

    def exec(self, prep_res: str) -> dict[str, Any]:
        system = {"role": "system", "content": "You check that an answer says only what the notes say."}
        verdict: dict[str, Any] = json.loads(self.model.chat([system, {"role": "user", "content": prep_res}], schema=VERDICT).content)
        return verdict

    def post(self, shared: Shared, prep_res: str, exec_res: dict[str, Any]) -> str:
        print("supervisor:", "approved" if exec_res["grounded"] else exec_res["feedback"])
        shared["approved"] = exec_res["grounded"]
        if exec_res["grounded"]:
            return "approve"
        shared["feedback"].append(exec_res["feedback"])
        return "give_up" if len(shared["feedback"]) >= ROUNDS else "reject"


class Done(Node):
    def exec(self, prep_res: Any) -> None:
        return None


def script(request: Request) -> Reply:
    """The offline models: the agent's first answer guesses past its notes and,
    told so, answers from them; the supervisor approves an answer whose longer
    words are all in the notes."""
    asked = [str(m["content"]) for m in request.messages if m["role"] == "user"]
    if "\n\nAnswer: " in asked[0]:
        notes, answer = asked[0].split("\n\nAnswer: ", 1)
        unsupported = [w for w in re.findall(r"\w+", answer) if len(w) > 4 and w.lower() not in notes.lower()]
        feedback = f"the notes do not mention: {', '.join(unsupported)}" if unsupported else "fine"
        return Reply(json.dumps({"grounded": not unsupported, "feedback": feedback}))
    notes = asked[0].removeprefix("Notes: ").split("\n\n", 1)[0]
    if len(asked) == 1:
        return Reply("Bees probably navigate with magnetic sensors and memory of landmarks.")
    sentences = re.split(r"(?<=\.)\s+", notes)
    return Reply(next((s for s in sentences if "find" in s), sentences[0]).strip())


def supervise(question: str, model: Model) -> Shared:
    look_up, respond = LookUp(), Respond(model)
    look_up >> respond
    agent = Flow(start=look_up)
    check = Supervise(model)
    agent >> check
    check - "reject" >> agent
    check - "approve" >> Done()
    check - "give_up" >> Done()
    shared: Shared = {"question": question, "feedback": []}
    Flow(start=agent, max_steps=20).run(shared)
    return shared


if __name__ == "__main__":
    q = sys.argv[1] if len(sys.argv) > 1 else "How do bees find flowers?"
    task = supervise(q, Model.from_env(script))
    print(f"Q: {q}\nA: {task['answer']} ({'approved' if task['approved'] else 'not approved'})")
