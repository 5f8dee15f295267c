"""Human in the loop: a post is drafted from the offline library, then the run
pauses for a person's approval and the process exits; nothing waits in memory.
Later, another process resumes it with the answer: "yes" publishes, anything
else goes back as feedback for a shorter draft, which asks again. Checkpoints
live in a SQLite file, so a crash at any point loses nothing either.

    python examples/python/approval.py start runs.db post-1 bees
    python examples/python/approval.py answer runs.db post-1 "shorter please"
    python examples/python/approval.py answer runs.db post-1 yes
    python examples/python/approval.py history runs.db post-1
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from minllm import Flow, Interrupted, Node, SqliteCheckpointer, interrupt

from model import Model, Reply, Request

DATA = Path(__file__).resolve().parent.parent / "data"
Shared = dict[str, Any]


def source(topic: str) -> str:
    for path in sorted(DATA.glob("*.txt")):
        text = path.read_text()
        if topic.lower() in path.stem or topic.lower() in text.lower():
            return text
    raise LookupError(f"the library has nothing on {topic!r}")


class Draft(Node):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model

    def prep(self, shared: Shared) -> str:
        asked = f"Write a one-sentence post about {shared['topic']} from this text."
        for note in shared["feedback"]:
            asked += f"\nThe editor said: {note}"
        return f"{asked}\n\n{source(shared['topic'])}"

    def exec(self, prep_res: str) -> str:
        return self.model.chat([{"role": "user", "content": prep_res}]).content

    def post(self, shared: Shared, prep_res: Any, exec_res: str) -> None:
        shared["draft"] = exec_res


def script(request: Request) -> Reply:
    """The offline model: the text's sentence most about the topic, four words
    shorter for each note of the editor."""
    head, _, text = request.last_user().partition("\n\n")
    topic = head.split(" about ", 1)[1].split(" from this text", 1)[0].lower()
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    best = max(sentences, key=lambda s: (s.lower().count(topic), -len(s)))
    words = best.split()
    return Reply(" ".join(words[: max(6, len(words) - 4 * head.count("The editor said:"))]))


class Review(Node):
    def prep(self, shared: Shared) -> str:
        draft: str = shared["draft"]
        return draft

    def exec(self, prep_res: str) -> str:
        answer: str = interrupt(f"Publish this? (yes, or what to change)\n\n  {prep_res}\n")
        return answer

    def post(self, shared: Shared, prep_res: str, exec_res: str) -> str:
        if exec_res.strip().lower() == "yes":
            shared["published"] = True
            return "approved"
        shared["feedback"].append(exec_res)
        return "revise"


def build(model: Model) -> Flow:
    draft, review = Draft(model), Review()
    draft >> review
    review - "revise" >> draft
    review - "approved" >> Node()
    return Flow(start=draft, max_steps=50)


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    command, db, run_id = sys.argv[1:4]
    checkpoints = SqliteCheckpointer(db)
    flow = build(Model.from_env(script))
    try:
        if command == "start":
            shared: Shared = {"topic": sys.argv[4], "feedback": [], "published": False}
            flow.run(shared, checkpointer=checkpoints, run_id=run_id)
        elif command == "answer":
            shared = flow.resume(run_id, checkpointer=checkpoints, answer=sys.argv[4])
        elif command == "history":
            for line in checkpoints.history(run_id):
                print(f"#{line.seq} step {line.step} at {line.node} ({line.status})")
            return 0
        else:
            print(__doc__)
            return 2
    except Interrupted as stop:
        print(f"paused at `{stop.node}`:\n{stop.value}")
        return 3
    print(f"published after {len(shared['feedback'])} rounds of feedback:\n\n  {shared['draft']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
