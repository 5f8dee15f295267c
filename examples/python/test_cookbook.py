"""Each Python example of the cookbook, run offline on its scripted model, and
its result checked (``pytest examples/python``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

import chat
import multi_agent
import rag
import structured
import supervisor
import tools
import translate
import workflow
from model import Model, Reply, Request

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.filterwarnings("error")  # no "Flow ends" warnings either


def test_chat_remembers_the_conversation_until_bye() -> None:
    lines = iter(["hello", "my name is Ada", "", "what is my name?", "bye", "never read"])
    messages = chat.chat(lines, Model(chat.script))
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hello"), ("assistant", "Hello! What would you like to talk about?"),
        ("user", "my name is Ada"), ("assistant", "Nice to meet you, Ada!"),
        ("user", "what is my name?"), ("assistant", "Your name is Ada."),
    ]


def test_chat_reads_stdin_when_run() -> None:
    out = subprocess.run([sys.executable, str(HERE / "chat.py")], input="my name is Bo\nwhat is my name?\n",
                         capture_output=True, text=True, check=True).stdout
    assert "bot> Your name is Bo." in out


def test_structured_output_is_sent_back_with_its_error_and_fixed() -> None:
    result = structured.extract("Met Grace Hopper (grace@navy.mil) at US Navy; knows COBOL, compilers.",
                                Model(structured.script))
    assert result["tries"] == 2
    assert result["contact"] == structured.Contact("Grace Hopper", "grace@navy.mil", "US Navy", ["COBOL", "compilers"])


def test_structured_output_gives_up_after_three_bad_answers() -> None:
    with pytest.raises(ValueError, match="no valid contact after 3 tries"):
        structured.extract("Met someone.", Model(lambda _: Reply("Sure! {}")))


def test_workflow_revises_until_the_review_passes_and_is_bounded() -> None:
    result = workflow.write("tides", Model(workflow.script))
    assert result["outcome"] == "published"
    assert result["notes"] == ["add a one-sentence conclusion", "clear, with a conclusion"]
    harsh = Model(lambda r: Reply(json.dumps({"accept": False, "notes": "no"})) if r.schema else workflow.script(r))
    result = workflow.write("tides", harsh)
    assert result["outcome"] == "gave up" and len(result["notes"]) == workflow.ROUNDS


def test_the_tool_agent_calls_tools_until_it_can_answer() -> None:
    result = tools.ask("How do bees find flowers, and what is 6 * (3 + 4)?", Model(tools.script))
    assert result["used"] == ["search", "calculator"]
    assert "flowers" in result["answer"] and result["answer"].endswith("And 42")
    assert [m["role"] for m in result["messages"][1:]] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]


def test_tools_that_fail_tell_the_model_why() -> None:
    from model import ToolCall

    assert tools.run_tool(ToolCall("1", "read_file", '{"name": "../setup.py"}')).startswith("error: '../setup.py' is not")
    assert tools.run_tool(ToolCall("2", "calculator", '{"expression": "__import__(\\"os\\")"}')).startswith("error: not arithmetic")
    assert tools.run_tool(ToolCall("3", "calculator", '{"expression": "1/0"}')) == "error: float division by zero"


def test_rag_answers_from_the_closest_passages_with_sources() -> None:
    result = rag.ask("How do bees find flowers?", Model(rag.script))
    assert len(result["index"]) == len(result["passages"]) == 10
    assert result["found"][0][1][0] == "bees#2"
    assert result["answer"].endswith("[bees#2]") and "flowers" in result["answer"]
    assert rag.ask("Why does bread dough rise?", Model(rag.script))["found"][0][1][0].startswith("bread#")


def test_translations_come_in_order_with_at_most_three_calls_at_once() -> None:
    result = asyncio.run(translate.translate("Hello, friend", translate.LANGUAGES, Model(translate.script)))
    assert result["translations"] == [
        ("French", "bonjour, ami"), ("Spanish", "hola, amigo"), ("German", "hallo, Freund"),
        ("Italian", "ciao, amico"), ("Portuguese", "olá, amigo"), ("Dutch", "Hello, friend"),
    ]
    assert result["peak"] == translate.LIMIT


def test_the_agents_talk_over_queues_until_the_word_is_found() -> None:
    hinter, guesser = asyncio.run(multi_agent.play("lighthouse", Model(multi_agent.script)))
    assert hinter["found"] and guesser["found"]
    assert guesser["guesses"] == ["harbour", "lamp", "lighthouse"] == hinter["guesses"]
    hinter, guesser = asyncio.run(multi_agent.play("submarine", Model(multi_agent.script)))
    assert not hinter["found"] and len(hinter["hints"]) == multi_agent.ROUNDS == len(guesser["guesses"])


def test_the_supervisor_sends_ungrounded_answers_back() -> None:
    task = supervisor.supervise("How do bees find flowers?", Model(supervisor.script))
    assert task["approved"] and len(task["feedback"]) == 1
    assert "find the same flowers" in task["answer"]
    stubborn = Model(lambda r: supervisor.script(r) if r.schema else Reply("Bees navigate by satellites."))
    task = supervisor.supervise("How do bees find flowers?", stubborn)
    assert not task["approved"] and len(task["feedback"]) == supervisor.ROUNDS


def test_the_offline_embedding_ranks() -> None:
    from model import cosine, hashed

    q = hashed("How do bees find flowers?")
    assert cosine(q, hashed("Bees dance to tell the hive where the flowers are.")) > 0.3
    assert cosine(q, hashed("Bread rises because yeast makes gas in the dough.")) < 0.05


def test_requests_carry_tools_and_schemas_to_the_script() -> None:
    seen: list[Request] = []

    def script(request: Request) -> Reply:
        seen.append(request)
        return Reply("ok")

    Model(script).chat([{"role": "user", "content": "hi"}], tools=tools.TOOLS, schema={"type": "object"})
    assert seen[0].tools == tools.TOOLS and seen[0].schema == {"type": "object"}


def test_map_reduce_summarises_every_document() -> None:
    import map_reduce

    shared = map_reduce.map_reduce(Model(map_reduce.script))
    assert [name for name, _ in shared["summaries"]] == ["bees", "bread", "compilers", "lighthouses", "rivers"]
    assert "dance" in shared["summaries"][0][1]
    assert shared["report"].startswith("bees: ")


def test_streaming_emits_the_answer_token_by_token() -> None:
    import streaming

    shared = {"question": "How do bees find the richest flowers?"}
    events = list(streaming.build(Model(streaming.script)).stream(shared))
    tokens = [e.value for e in events if e.kind == "custom"]
    assert len(tokens) > 5 and "".join(tokens) == shared["answer"]
    assert [(e.kind, e.node) for e in events if e.kind != "custom"] == [
        ("node_started", "Retrieve"), ("node_finished", "Retrieve"),
        ("node_started", "Answer"), ("node_finished", "Answer"),
    ]


def test_approval_pauses_for_each_review_and_publishes_on_yes() -> None:
    import approval
    from minllm import Interrupted, MemoryCheckpointer

    flow, checkpoints = approval.build(Model(approval.script)), MemoryCheckpointer()
    with pytest.raises(Interrupted) as first:
        flow.run({"topic": "bees", "feedback": [], "published": False}, checkpointer=checkpoints, run_id="p")
    assert "Publish this?" in str(first.value.value) and "bees" in str(first.value.value)
    with pytest.raises(Interrupted) as second:
        flow.resume("p", checkpointer=checkpoints, answer="shorter please")
    assert len(str(second.value.value)) < len(str(first.value.value))
    shared = flow.resume("p", checkpointer=checkpoints, answer="yes")
    assert shared["published"] and shared["feedback"] == ["shorter please"]
