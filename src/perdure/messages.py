"""The messages of a conversation with a model: JSON-serializable pydantic types.

A conversation is a list of ``ModelRequest`` (what we send: prompts, tool results, retry prompts) and
``ModelResponse`` (what the model answers: text and tool calls). ``ModelMessagesTypeAdapter`` turns a list
into JSON and back, so a conversation can be stored and passed as ``message_history`` to continue it::

    data = ModelMessagesTypeAdapter.dump_json(result.all_messages())
    history = ModelMessagesTypeAdapter.validate_json(data)
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, WithJsonSchema

from .usage import RequestUsage

__all__ = [
    "AudioUrl",
    "BinaryContent",
    "DocumentUrl",
    "ImageUrl",
    "ModelMessage",
    "ModelMessagesTypeAdapter",
    "ModelRequest",
    "ModelRequestPart",
    "ModelResponse",
    "ModelResponsePart",
    "RetryPromptPart",
    "SystemPromptPart",
    "TextPart",
    "ThinkingPart",
    "ToolCallPart",
    "ToolReturnPart",
    "UserContent",
    "UserPromptPart",
]


def _now() -> datetime:
    return datetime.now(UTC)


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class SystemPromptPart(_Part):
    """Instructions for the model."""

    content: str
    part_kind: Literal["system-prompt"] = "system-prompt"


def _bytes_from(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):  # how the bytes travel in JSON, and come back from a journal or a history file
        return base64.b64decode(value, validate=True)
    raise ValueError(f"expected bytes or a base64 string, not {type(value).__name__}")


Base64Bytes = Annotated[
    bytes,
    PlainValidator(_bytes_from),
    PlainSerializer(lambda data: base64.b64encode(data).decode("ascii"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
"""Bytes in Python, a base64 string in JSON (pydantic's default would be UTF-8 text, which binary is not)."""


def _guess_media_type(url: str) -> str | None:
    return mimetypes.guess_type(url.split("?", 1)[0].split("#", 1)[0])[0]


class _FileUrl(_Part):
    url: str
    media_type: str | None = None
    """The MIME type; guessed from the URL's extension when not given (some providers need it)."""

    @property
    def resolved_media_type(self) -> str | None:
        return self.media_type or _guess_media_type(self.url)


class ImageUrl(_FileUrl):
    """An image the model fetches from a URL (``https://`` or a ``data:`` URL)."""

    kind: Literal["image-url"] = "image-url"


class DocumentUrl(_FileUrl):
    """A document (a PDF, usually) the model fetches from a URL."""

    kind: Literal["document-url"] = "document-url"


class AudioUrl(_FileUrl):
    """Audio the model fetches from a URL (only some providers take audio by URL)."""

    kind: Literal["audio-url"] = "audio-url"


class BinaryContent(_Part):
    """A file sent inline: an image, a PDF, audio. ``data`` is bytes (base64 in JSON).

    ``BinaryContent.from_path("chart.png")`` reads a file and guesses its media type.
    """

    data: Base64Bytes
    media_type: str
    kind: Literal["binary"] = "binary"

    @classmethod
    def from_path(cls, path: str | Path, media_type: str | None = None) -> BinaryContent:
        path = Path(path)
        media_type = media_type or mimetypes.guess_type(path.name)[0]
        if media_type is None:
            raise ValueError(f"cannot tell the media type of {str(path)!r}; pass media_type=...")
        return cls(data=path.read_bytes(), media_type=media_type)

    @property
    def is_image(self) -> bool:
        return self.media_type.startswith("image/")

    @property
    def is_audio(self) -> bool:
        return self.media_type.startswith("audio/")

    @property
    def is_document(self) -> bool:
        return not (self.is_image or self.is_audio or self.media_type.startswith("video/"))

    @property
    def identifier(self) -> str:
        """A short content hash: the same bytes always get the same name (tool results refer to files by it)."""
        return hashlib.sha256(self.data).hexdigest()[:12]

    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"


MultiModalContent = Annotated[ImageUrl | DocumentUrl | AudioUrl | BinaryContent, Field(discriminator="kind")]
"""A file in a prompt or a tool result."""

UserContent = str | MultiModalContent
"""One item of a prompt made of parts: text, or a file."""


class UserPromptPart(_Part):
    """What the user asked: text, or a list of text and files (``ImageUrl``, ``BinaryContent``, ...)."""

    content: str | list[UserContent]
    part_kind: Literal["user-prompt"] = "user-prompt"

    @property
    def text(self) -> str:
        """The text of the prompt, files left out."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(item for item in self.content if isinstance(item, str))


class ToolReturnPart(_Part):
    """The result of a tool call, sent back to the model."""

    tool_name: str
    content: Any
    tool_call_id: str
    part_kind: Literal["tool-return"] = "tool-return"

    def model_response_str(self) -> str:
        """The content as the text a model sees."""
        if isinstance(self.content, str):
            return self.content
        return json.dumps(pydantic.TypeAdapter(Any).dump_python(self.content, mode="json"))


class RetryPromptPart(_Part):
    """Asks the model to try again: invalid tool arguments, ``ModelRetry`` from a tool, invalid output."""

    content: str | list[dict[str, Any]]
    tool_name: str | None = None
    tool_call_id: str | None = None
    part_kind: Literal["retry-prompt"] = "retry-prompt"

    def model_response(self) -> str:
        """The text a model sees."""
        if isinstance(self.content, str):
            body = self.content
        else:
            lines = [f"{len(self.content)} validation error{'s' if len(self.content) != 1 else ''}:"]
            lines += [f"- {'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}" for e in self.content]
            body = "\n".join(lines)
        return f"{body}\n\nFix the errors and try again."


ModelRequestPart = Annotated[
    SystemPromptPart | UserPromptPart | ToolReturnPart | RetryPromptPart, Field(discriminator="part_kind")
]


class TextPart(_Part):
    """Text from the model."""

    content: str
    part_kind: Literal["text"] = "text"


class ToolCallPart(_Part):
    """The model asks for a tool call. ``args`` is a dict, or the raw JSON string the model produced."""

    tool_name: str
    args: dict[str, Any] | str = Field(default_factory=dict)
    tool_call_id: str = ""
    part_kind: Literal["tool-call"] = "tool-call"

    def args_as_dict(self) -> dict[str, Any]:
        """The arguments as a dict; raises ``ValueError`` if they are not a JSON object."""
        if isinstance(self.args, dict):
            return self.args
        value = json.loads(self.args) if self.args.strip() else {}
        if not isinstance(value, dict):
            raise ValueError("tool arguments must be a JSON object")
        return value

    def args_as_json_str(self) -> str:
        """The arguments as a JSON string."""
        return self.args if isinstance(self.args, str) else json.dumps(self.args)


class ThinkingPart(_Part):
    """The model's reasoning ("thinking"), kept in the history and sent back as its provider requires.

    ``content`` is the readable reasoning (empty when the provider hid it); ``signature`` is the provider's
    opaque proof of it (Anthropic's signature, a redacted block's encrypted data, Gemini's thought signature),
    which only the provider named by ``provider_name`` can check, so other providers are never sent it.
    ``redacted`` marks reasoning the provider returned encrypted only; ``id`` and ``provider_data`` keep what
    else a provider needs to receive it again.
    """

    content: str = ""
    signature: str | None = None
    redacted: bool = False
    id: str | None = None
    provider_name: str | None = None
    provider_data: dict[str, Any] | None = None
    part_kind: Literal["thinking"] = "thinking"


ModelResponsePart = Annotated[TextPart | ToolCallPart | ThinkingPart, Field(discriminator="part_kind")]


class ModelRequest(BaseModel):
    """A message we send to the model."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    parts: list[ModelRequestPart]
    instructions: str | None = None
    kind: Literal["request"] = "request"


class ModelResponse(BaseModel):
    """A message the model answered with."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    parts: list[ModelResponsePart]
    usage: RequestUsage = Field(default_factory=RequestUsage)
    model_name: str | None = None
    finish_reason: str | None = None
    timestamp: datetime = Field(default_factory=_now)
    kind: Literal["response"] = "response"

    @property
    def text(self) -> str | None:
        """All text parts joined, or None if there is none."""
        texts = [p.content for p in self.parts if isinstance(p, TextPart)]
        return "".join(texts) if texts else None

    @property
    def tool_calls(self) -> list[ToolCallPart]:
        """The tool calls in this response, in order."""
        return [p for p in self.parts if isinstance(p, ToolCallPart)]

    @property
    def thinking(self) -> str | None:
        """The readable reasoning of all thinking parts, joined; None if there is none."""
        texts = [p.content for p in self.parts if isinstance(p, ThinkingPart) and p.content]
        return "\n\n".join(texts) if texts else None


ModelMessage = Annotated[ModelRequest | ModelResponse, Field(discriminator="kind")]

ModelMessagesTypeAdapter: pydantic.TypeAdapter[list[ModelMessage]] = pydantic.TypeAdapter(
    list[ModelMessage], config=ConfigDict(defer_build=True)
)
"""Turns a list of messages into JSON and back."""
