"""Agent with tools: ``Decide`` sends the conversation and three tools (search
the library, a calculator, read a file of the library) to the model; when it
calls tools, ``Act`` runs them and adds their results, and ``Decide`` asks
again; when it answers, the flow ends. A failing tool tells the model why.

    python examples/python/tools.py "How do bees find flowers, and what is 6 * (3 + 4)?"
"""

from __future__ import annotations

import ast
import operator
import re
import sys
from pathlib import Path
from typing import Any, Callable

from minllm import Flow, Node

from model import Model, Reply, Request, ToolCall, cosine, hashed, summarize

DATA = Path(__file__).resolve().parent.parent / "data"
Shared = dict[str, Any]


def _tool(name: str, about: str, arg: str) -> dict[str, Any]:
    params = {"type": "object", "properties": {arg: {"type": "string"}}, "required": [arg]}
    return {"type": "function", "function": {"name": name, "description": about, "parameters": params}}


TOOLS = [
    _tool("search", "Finds the passage of the library closest to a query", "query"),
    _tool("calculator", "Evaluates arithmetic: + - * / and parentheses", "expression"),
    _tool("read_file", "Reads a document of the library, e.g. bees.txt", "name"),
]


def search(query: str) -> str:
    asked = hashed(query)
    passages = [p.strip() for path in sorted(DATA.glob("*.txt")) for p in path.read_text().split("\n\n") if p.strip()]
    return max(passages, key=lambda p: cosine(asked, hashed(p)))


_OPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}


def calculate(expression: str) -> float:
    """+ - * / and parentheses over numbers; nothing else is evaluated."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        raise ValueError(f"not arithmetic: {expression!r}")

    return value(ast.parse(expression, mode="eval").body)


def read_file(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"{name!r} is not a document of the library (give a name like bees.txt)")
    path = DATA / name
    if not path.is_file():
        raise ValueError(f"the library has no {name!r}")
    return path.read_text()


def run_tool(call: ToolCall) -> str:
    """A tool's result, or why it failed (the model reads either)."""
    args = call.args()
    try:
        if call.name == "search":
            return search(str(args.get("query", "")))
        if call.name == "calculator":
            result = calculate(str(args.get("expression", "")))
            return str(int(result)) if result.is_integer() else str(result)
        if call.name == "read_file":
            return read_file(str(args.get("name", "")))
        return f"error: there is no tool `{call.name}`"
    except (ValueError, SyntaxError, ZeroDivisionError) as e:
        return f"error: {e}"


class Decide(Node):
    def __init__(self, model: Model) -> None:
        super().__init__(max_retries=3, wait=0.5)
        self.model = model

    def prep(self, shared: Shared) -> list[dict[str, Any]]:
        return list(shared["messages"])

    def exec(self, prep_res: list[dict[str, Any]]) -> Reply:
        return self.model.chat(prep_res, tools=TOOLS)

    def post(self, shared: Shared, prep_res: Any, exec_res: Reply) -> str:
        shared["messages"].append(exec_res.message())
        if exec_res.tool_calls:
            shared["pending"] = exec_res.tool_calls
            return "act"
        shared["answer"] = exec_res.content
        return "answer"


class Act(Node):
    def prep(self, shared: Shared) -> list[ToolCall]:
        pending: list[ToolCall] = shared.pop("pending")
        return pending

    def exec(self, prep_res: list[ToolCall]) -> list[tuple[ToolCall, str]]:
        return [(call, run_tool(call)) for call in prep_res]

    def post(self, shared: Shared, prep_res: Any, exec_res: list[tuple[ToolCall, str]]) -> None:
        for call, result in exec_res:
            print(f"{call.name}({call.arguments}) -> {result[:80]}")
            shared["used"].append(call.name)
            shared["messages"].append({"role": "tool", "tool_call_id": call.id, "content": result})


class Answer(Node):
    def prep(self, shared: Shared) -> str:
        answer: str = shared["answer"]
        return answer

    def exec(self, prep_res: str) -> None:
        print(f"A: {prep_res}")


def script(request: Request) -> Reply:
    """The offline model: searches the question's topic, calculates its
    arithmetic, reads a document it names, one tool a turn, then answers."""
    question = next(str(m["content"]) for m in request.messages if m["role"] == "user")
    called = [c["function"]["name"] for m in request.messages for c in m.get("tool_calls") or []]
    results = [str(m["content"]) for m in request.messages if m["role"] == "tool"]
    expression = "".join(c for c in question if c.isdigit() or c in "+-*/(). ").strip(" .")
    file = next((w for w in re.findall(r"[\w.]+\.txt", question)), None)
    topic = re.split(r"[,?]", question)[0]
    if file and "read_file" not in called:
        return Reply.call("read_file", {"name": file})
    if not file and any(len(w) > 3 for w in topic.split()) and "search" not in called:
        return Reply.call("search", {"query": topic})
    if any(op in expression for op in "+-*/") and "calculator" not in called:
        return Reply.call("calculator", {"expression": expression})
    said = [summarize(r) if len(r) > 60 else r for r in results]
    return Reply("From my tools: " + " And ".join(said))


def ask(question: str, model: Model) -> Shared:
    decide, act = Decide(model), Act()
    decide - "act" >> act >> decide
    decide - "answer" >> Answer()
    system = {"role": "system", "content": "Answer the question. Use the tools for facts and arithmetic."}
    shared: Shared = {"messages": [system, {"role": "user", "content": question}], "used": []}
    Flow(start=decide, max_steps=20).run(shared)
    return shared


if __name__ == "__main__":
    ask(sys.argv[1] if len(sys.argv) > 1 else "How do bees find flowers, and what is 6 * (3 + 4)?", Model.from_env(script))
