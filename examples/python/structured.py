"""Structured output: the model turns a free-text note into a typed ``Contact``
(a dataclass), asked for JSON that fits a schema; an answer that does not parse
is sent back with the error, and the model tries again (three tries).

    python examples/python/structured.py "Met Grace Hopper (grace@navy.mil) at US Navy; knows COBOL, compilers."
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass
from typing import Any

from minllm import Flow, Node

from model import Model, Reply, Request

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "email": {"type": "string"}, "company": {"type": "string"},
                   "skills": {"type": "array", "items": {"type": "string"}}},
    "required": ["name", "email", "company", "skills"],
    "additionalProperties": False,
}


@dataclass
class Contact:
    name: str
    email: str
    company: str
    skills: list[str]

    @staticmethod
    def parse(text: str) -> Contact:
        """The contact in ``text``, or ``ValueError`` saying what is wrong."""
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("the answer is not a JSON object")
        missing = [k for k in ("name", "email", "company", "skills") if k not in value]
        if missing:
            raise ValueError(f"missing field(s): {', '.join(missing)}")
        if not isinstance(value["skills"], list):
            raise ValueError("`skills` must be a list of strings")
        return Contact(str(value["name"]), str(value["email"]), str(value["company"]), [str(s) for s in value["skills"]])


class Extract(Node):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=2, wait=0.5)
        self.model = model

    def prep(self, shared: dict[str, Any]) -> str:
        note: str = shared["note"]
        return note

    def exec(self, prep_res: str) -> tuple[Contact, int]:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "Extract the contact from the note. Answer with JSON only."},
            {"role": "user", "content": prep_res},
        ]
        error = ""
        for tries in range(1, 4):
            reply = self.model.chat(messages, schema=SCHEMA)
            try:
                return Contact.parse(reply.content), tries
            except ValueError as e:
                error = str(e)
                messages += [{"role": "assistant", "content": reply.content},
                             {"role": "user", "content": f"That is not valid: {e}. Answer again with only the JSON object."}]
        raise ValueError(f"no valid contact after 3 tries: {error}")

    def post(self, shared: dict[str, Any], prep_res: str, exec_res: tuple[Contact, int]) -> None:
        shared["contact"], shared["tries"] = exec_res


def script(request: Request) -> Reply:
    """The offline model: reads the note with simple rules; its first answer
    forgets ``skills``, as models do, and it fixes that once told."""
    note = next(str(m["content"]) for m in request.messages if m["role"] == "user")
    email = next((w.rstrip(".") for w in re.split(r"[\s(),;]+", note) if "@" in w), "")
    names = [w for w in re.findall(r"\b[A-Z][a-z]+\b", note)][1:3]
    company = re.split(r"[;,.]", note.split(" at ", 1)[1])[0].strip() if " at " in note else ""
    skills = [s.strip(" .") for s in re.split(r"[,]|\band\b", note.split("knows ", 1)[1])] if "knows " in note else []
    answer: dict[str, Any] = {"name": " ".join(names), "email": email, "company": company, "skills": [s for s in skills if s]}
    if not any(str(m.get("content", "")).startswith("That is not valid") for m in request.messages):
        del answer["skills"]
    return Reply(json.dumps(answer))


def extract(note: str, model: Model) -> dict[str, Any]:
    shared: dict[str, Any] = {"note": note}
    Flow(start=Extract(model)).run(shared)
    return shared


if __name__ == "__main__":
    text = sys.argv[1] if len(sys.argv) > 1 else "Met Ada Lovelace (ada@analytical.org) at Analytical Engines; knows mathematics, poetry."
    result = extract(text, Model.from_env(script))
    print(json.dumps(asdict(result["contact"]), indent=2), f"(after {result['tries']} tries)")
