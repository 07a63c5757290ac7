"""Files in prompts and tool results, through each provider's real SDK against the fake server.

Wire shapes are the providers' documented content parts: Chat Completions ``image_url``/``input_audio``/``file``
parts; Anthropic ``image``/``document`` blocks with ``url``/``base64``/``text`` sources (also inside
``tool_result``); Gemini ``inlineData`` (base64) and ``fileData`` parts; Responses ``input_image``/``input_file``.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from perdure import Agent
from perdure._exceptions import UserError
from perdure.messages import (
    AudioUrl,
    BinaryContent,
    DocumentUrl,
    ImageUrl,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from perdure.models import Model, ModelRequestParameters
from perdure.models.anthropic import AnthropicModel
from perdure.models.google import GoogleModel
from perdure.models.openai import OpenAIModel
from perdure.models.openai_responses import OpenAIResponsesModel

from . import google_server, responses_server
from .fake_server import FakeProviderServer, anthropic_message, openai_completion

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR-not-a-real-image"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3 not a real pdf"
WAV = b"RIFF$\x00\x00\x00WAVEfmt "


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def prompt(*items: Any) -> list[ModelMessage]:
    return [ModelRequest(parts=[UserPromptPart(content=list(items))])]


def send(model: Model, messages: list[ModelMessage]) -> ModelResponse:
    async def go() -> ModelResponse:
        try:
            return await model.request(messages, None, ModelRequestParameters())
        finally:
            await model.close()  # type: ignore[attr-defined]

    return asyncio.run(go())


def tool_result(content: Any) -> list[ModelMessage]:
    """A history whose last request returns ``content`` from a tool."""
    return [
        ModelRequest(parts=[UserPromptPart(content="Show me the chart.")]),
        ModelResponse(parts=[ToolCallPart(tool_name="chart", args={}, tool_call_id="call_1")]),
        ModelRequest(parts=[ToolReturnPart(tool_name="chart", content=content, tool_call_id="call_1")]),
    ]


# --- the message types -------------------------------------------------------------------------------------


def test_prompt_parts_round_trip_through_json_with_bytes_as_base64() -> None:
    messages = prompt(
        "Compare these:",
        ImageUrl(url="https://example.com/a.png"),
        BinaryContent(data=PNG, media_type="image/png"),
        DocumentUrl(url="https://example.com/paper.pdf"),
        AudioUrl(url="https://example.com/clip.mp3", media_type="audio/mpeg"),
    )

    data = ModelMessagesTypeAdapter.dump_json(messages)

    assert b64(PNG).encode() in data
    assert ModelMessagesTypeAdapter.validate_json(data) == messages
    assert (
        ModelMessagesTypeAdapter.validate_python(ModelMessagesTypeAdapter.dump_python(messages, mode="json"))
        == messages
    )


def test_a_tool_result_file_survives_json_as_a_file() -> None:
    messages = tool_result(BinaryContent(data=PNG, media_type="image/png"))

    back = ModelMessagesTypeAdapter.validate_json(ModelMessagesTypeAdapter.dump_json(messages))

    # Content of a tool result is Any: it comes back as the JSON object, which every provider reads as the file.
    returned = back[-1].parts[0]
    assert isinstance(returned, ToolReturnPart)
    assert returned.content == {"data": b64(PNG), "media_type": "image/png", "kind": "binary"}


def test_binary_content_from_path_and_helpers(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    path.write_bytes(PNG)

    image = BinaryContent.from_path(path)

    assert (image.media_type, image.is_image, image.is_document) == ("image/png", True, False)
    assert image.data_url() == f"data:image/png;base64,{b64(PNG)}"
    assert image.identifier == BinaryContent(data=PNG, media_type="image/png").identifier
    assert ImageUrl(url="https://x.test/photo.JPG?size=2").resolved_media_type == "image/jpeg"
    assert UserPromptPart(content=["a", ImageUrl(url="https://x.test/p.png"), "b"]).text == "a\nb"
    with pytest.raises(ValueError, match="media type"):
        BinaryContent.from_path(tmp_path / "no-extension")


# --- OpenAI Chat Completions -------------------------------------------------------------------------------


def chat_model(server: FakeProviderServer) -> OpenAIModel:
    return OpenAIModel("gpt-test", base_url=server.openai_base_url, api_key="sk-test")


def test_chat_prompt_parts(server: FakeProviderServer) -> None:
    server.enqueue(openai_completion("seen"))

    send(
        chat_model(server),
        prompt(
            "What is in these?",
            ImageUrl(url="https://example.com/a.png"),
            BinaryContent(data=PNG, media_type="image/png"),
            BinaryContent(data=PDF, media_type="application/pdf"),
            BinaryContent(data=WAV, media_type="audio/wav"),
        ),
    )

    content = server.last_body["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "What is in these?"}
    assert content[1] == {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    assert content[2] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}}
    assert content[3]["type"] == "file"
    assert content[3]["file"]["file_data"] == f"data:application/pdf;base64,{b64(PDF)}"
    assert content[3]["file"]["filename"].endswith(".pdf")
    assert content[4] == {"type": "input_audio", "input_audio": {"data": b64(WAV), "format": "wav"}}


def test_chat_refuses_a_document_url_before_sending(server: FakeProviderServer) -> None:
    with pytest.raises(UserError, match="BinaryContent"):
        send(chat_model(server), prompt(DocumentUrl(url="https://example.com/paper.pdf")))
    assert server.requests == []


def test_chat_tool_returning_an_image(server: FakeProviderServer) -> None:
    server.enqueue(openai_completion("a bar chart"))
    image = BinaryContent(data=PNG, media_type="image/png")

    send(chat_model(server), tool_result(image))

    messages = server.last_body["messages"]
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": f"See file {image.identifier}."}
    assert messages[3]["role"] == "user"
    assert messages[3]["content"] == [
        {"type": "text", "text": f"This is file {image.identifier}:"},
        {"type": "image_url", "image_url": {"url": image.data_url()}},
    ]


# --- Anthropic ---------------------------------------------------------------------------------------------


def anthropic_model(server: FakeProviderServer) -> AnthropicModel:
    return AnthropicModel("claude-test", base_url=server.anthropic_base_url, api_key="sk-ant-test")


def test_anthropic_prompt_parts(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message("seen"))

    send(
        anthropic_model(server),
        prompt(
            "Read these.",
            ImageUrl(url="https://example.com/a.png"),
            BinaryContent(data=PNG, media_type="image/png"),
            DocumentUrl(url="https://example.com/paper.pdf"),
            BinaryContent(data=PDF, media_type="application/pdf"),
            BinaryContent(data=b"plain notes", media_type="text/plain"),
        ),
    )

    blocks = server.last_body["messages"][0]["content"]
    assert blocks == [
        {"type": "text", "text": "Read these."},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/paper.pdf"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain notes"}},
    ]


def test_anthropic_refuses_audio(server: FakeProviderServer) -> None:
    with pytest.raises(UserError, match="Anthropic"):
        send(anthropic_model(server), prompt(BinaryContent(data=WAV, media_type="audio/wav")))


def test_anthropic_tool_returning_text_and_a_document(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message("read it"))

    send(
        anthropic_model(server),
        tool_result(["Here is the report.", BinaryContent(data=PDF, media_type="application/pdf")]),
    )

    result = server.last_body["messages"][2]["content"][0]
    assert result == {
        "type": "tool_result",
        "tool_use_id": "call_1",
        "content": [
            {"type": "text", "text": '["Here is the report."]'},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)}},
        ],
    }


# --- Gemini ------------------------------------------------------------------------------------------------


def gemini_model(server: FakeProviderServer) -> GoogleModel:
    return GoogleModel("gemini-test", base_url=server.url, api_key="gk-test")


def test_gemini_prompt_parts(server: FakeProviderServer) -> None:
    server.enqueue(google_server.gemini_response([google_server.text("seen")]))

    send(
        gemini_model(server),
        prompt(
            "Describe.",
            BinaryContent(data=PNG, media_type="image/png"),
            BinaryContent(data=WAV, media_type="audio/wav"),
            DocumentUrl(url="https://example.com/paper.pdf"),
        ),
    )

    parts = google_server.wire(server.last_body["contents"][0]["parts"])
    assert parts == [
        {"text": "Describe."},
        {"inlineData": {"mimeType": "image/png", "data": b64(PNG)}},
        {"inlineData": {"mimeType": "audio/wav", "data": b64(WAV)}},
        {"fileData": {"fileUri": "https://example.com/paper.pdf", "mimeType": "application/pdf"}},
    ]


def test_gemini_needs_a_media_type_for_urls(server: FakeProviderServer) -> None:
    with pytest.raises(UserError, match="media_type"):
        send(gemini_model(server), prompt(ImageUrl(url="https://example.com/image")))


def test_gemini_tool_returning_an_image(server: FakeProviderServer) -> None:
    server.enqueue(google_server.gemini_response([google_server.text("a chart")]))
    image = BinaryContent(data=PNG, media_type="image/png")

    send(gemini_model(server), tool_result(image))

    parts = server.last_body["contents"][2]["parts"]
    parts[1:] = google_server.wire(parts[1:])
    assert parts[0] == {
        "functionResponse": {"id": "call_1", "name": "chart", "response": {"result": f"See file {image.identifier}."}}
    }
    assert parts[1:] == [
        {"text": f"This is file {image.identifier}:"},
        {"inlineData": {"mimeType": "image/png", "data": b64(PNG)}},
    ]


# --- OpenAI Responses --------------------------------------------------------------------------------------


def responses_model(server: FakeProviderServer) -> OpenAIResponsesModel:
    return OpenAIResponsesModel("gpt-test", base_url=server.openai_base_url, api_key="sk-test")


def test_responses_prompt_parts(server: FakeProviderServer) -> None:
    server.enqueue(responses_server.openai_response([responses_server.message("seen")]))

    send(
        responses_model(server),
        prompt(
            "Look.",
            ImageUrl(url="https://example.com/a.png"),
            BinaryContent(data=PNG, media_type="image/png"),
            DocumentUrl(url="https://example.com/paper.pdf"),
            BinaryContent(data=PDF, media_type="application/pdf"),
        ),
    )

    content = server.last_body["input"][0]["content"]
    assert content[:4] == [
        {"type": "input_text", "text": "Look."},
        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{b64(PNG)}", "detail": "auto"},
        {"type": "input_file", "file_url": "https://example.com/paper.pdf"},
    ]
    assert content[4]["file_data"] == f"data:application/pdf;base64,{b64(PDF)}"


def test_responses_tool_returning_an_image(server: FakeProviderServer) -> None:
    server.enqueue(responses_server.openai_response([responses_server.message("a chart")]))
    image = BinaryContent(data=PNG, media_type="image/png")

    send(responses_model(server), tool_result(image.model_dump(mode="json")))  # as it comes back from a journal

    output = server.last_body["input"][2]
    assert output == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": [{"type": "input_image", "image_url": image.data_url(), "detail": "auto"}],
    }


# --- an agent whose tool returns an image ------------------------------------------------------------------


@pytest.mark.parametrize("annotated", [True, False])
def test_agent_tool_returning_an_image_reaches_the_model(server: FakeProviderServer, annotated: bool) -> None:
    server.enqueue(
        openai_completion(tool_calls=[("call_1", "chart", "{}")]),
        openai_completion("It is a bar chart."),
    )
    image = BinaryContent(data=PNG, media_type="image/png")

    def chart_typed() -> BinaryContent:
        """Draw the chart."""
        return image

    def chart_untyped():  # type: ignore[no-untyped-def]  # a tool without a return annotation
        """Draw the chart."""
        return image

    chart = chart_typed if annotated else chart_untyped
    chart.__name__ = "chart"
    agent = Agent(chat_model(server), tools=[chart])

    history = prompt("What does the chart show?", ImageUrl(url="https://example.com/context.png"))
    result = agent.run_sync(message_history=history)

    assert result.output == "It is a bar chart."
    first, second = (r.body["messages"] for r in server.requests)
    assert first[0]["content"][1] == {"type": "image_url", "image_url": {"url": "https://example.com/context.png"}}
    assert second[-1]["content"][1] == {"type": "image_url", "image_url": {"url": image.data_url()}}


def test_durable_run_records_and_replays_files(server: FakeProviderServer, tmp_path: Path) -> None:
    from perdure import DurableAgent

    server.enqueue(
        openai_completion(tool_calls=[("call_1", "chart", "{}")]),
        openai_completion("It is a bar chart."),
    )
    image = BinaryContent(data=PNG, media_type="image/png")

    def chart() -> BinaryContent:
        """Draw the chart."""
        return image

    durable = DurableAgent(Agent(chat_model(server), tools=[chart], name="files"), journal=tmp_path / "files.db")
    history = prompt("What does the chart show?", BinaryContent(data=PDF, media_type="application/pdf"))

    first = durable.run_sync(run_id="files-1", message_history=history)
    again = durable.run_sync(run_id="files-1", message_history=history)  # finished: the journal answers

    assert len(server.requests) == 2
    assert again.output == first.output == "It is a bar chart."
    returned = [p for m in again.all_messages() for p in m.parts if isinstance(p, ToolReturnPart)]
    assert returned[0].content == image  # the tool's declared type brings the file back from the journal
    assert again.all_messages()[0].parts[0] == history[0].parts[0]
