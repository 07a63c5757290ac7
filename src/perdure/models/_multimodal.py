"""Files in prompts and tool results (``ImageUrl``, ``DocumentUrl``, ``AudioUrl``, ``BinaryContent``), per provider.

Each provider takes a different subset and shape; a file a provider cannot take is a ``UserError`` that says
which file and what to send instead, raised before anything goes over the wire.

A tool result may be a file, or a list holding files. Where the API takes files inside a tool result
(Anthropic, the Responses API) they go there; elsewhere (Chat Completions, Gemini) the tool result says
"see file <id>" and the files follow in the same user turn.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pydantic

from .._exceptions import UserError
from ..messages import (
    AudioUrl,
    BinaryContent,
    DocumentUrl,
    ImageUrl,
    MultiModalContent,
    ToolReturnPart,
    UserContent,
)

__all__ = [
    "anthropic_tool_result_content",
    "anthropic_user_blocks",
    "chat_tool_return",
    "chat_user_content",
    "gemini_tool_return",
    "gemini_user_parts",
    "responses_tool_output",
    "responses_user_content",
    "split_files",
]

_FILE_KINDS = ("image-url", "document-url", "audio-url", "binary")
_file_adapter: pydantic.TypeAdapter[MultiModalContent] = pydantic.TypeAdapter(MultiModalContent)


def _as_file(value: Any) -> MultiModalContent | None:
    """A file, from a file object or its JSON form (how a tool result comes back from a journal or history)."""
    if isinstance(value, ImageUrl | DocumentUrl | AudioUrl | BinaryContent):
        return value
    if isinstance(value, dict) and value.get("kind") in _FILE_KINDS:
        try:
            return _file_adapter.validate_python(value)
        except pydantic.ValidationError:
            return None
    return None


def split_files(content: Any) -> tuple[Any, list[MultiModalContent]]:
    """A tool result's files, and what is left of it (``None`` when it was only files)."""
    file = _as_file(content)
    if file is not None:
        return None, [file]
    if isinstance(content, list | tuple):
        files = [f for f in map(_as_file, content) if f is not None]
        if files:
            rest = [item for item in content if _as_file(item) is None]
            return (rest or None), files
    return content, []


def file_name(file: MultiModalContent) -> str:
    """How a tool result refers to a file it returned."""
    return file.identifier if isinstance(file, BinaryContent) else file.url


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(pydantic.TypeAdapter(Any).dump_python(value, mode="json"))


def _tool_text(rest: Any, files: list[MultiModalContent]) -> str:
    """A tool result's text when its files travel next to it: the rest, then which files to look at."""
    pieces = [] if rest is None else [_text_of(rest)]
    if files:
        pieces.append("See " + ", ".join(f"file {file_name(f)}" for f in files) + ".")
    return "\n".join(pieces)


def _unsupported(provider: str, file: MultiModalContent, instead: str) -> UserError:
    what = f"{file.kind} ({getattr(file, 'media_type', None) or getattr(file, 'url', '')})"
    return UserError(f"{provider} does not take {what} in a prompt or tool result; {instead}")


# --- OpenAI Chat Completions -------------------------------------------------------------------------------

_CHAT_AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/mpeg": "mp3"}


def chat_user_content(content: str | list[UserContent]) -> str | list[dict[str, Any]]:
    """A user message's ``content``: the plain string, or content parts."""
    if isinstance(content, str):
        return content
    return [_chat_item(item) for item in content]


def _chat_item(item: UserContent) -> dict[str, Any]:
    if isinstance(item, str):
        return {"type": "text", "text": item}
    if isinstance(item, ImageUrl):
        return {"type": "image_url", "image_url": {"url": item.url}}
    if isinstance(item, BinaryContent):
        if item.is_image:
            return {"type": "image_url", "image_url": {"url": item.data_url()}}
        if item.is_audio:
            audio_format = _CHAT_AUDIO_FORMATS.get(item.media_type)
            if audio_format is None:
                raise _unsupported("OpenAI Chat Completions", item, "send WAV or MP3 audio")
            return {"type": "input_audio", "input_audio": {"data": _b64(item.data), "format": audio_format}}
        if item.is_document:
            filename = f"{item.identifier}{_extension(item.media_type)}"
            return {"type": "file", "file": {"filename": filename, "file_data": item.data_url()}}
    raise _unsupported(
        "OpenAI Chat Completions", item, "download the file and send it as BinaryContent(data=..., media_type=...)"
    )


def chat_tool_return(part: ToolReturnPart) -> tuple[str, list[dict[str, Any]]]:
    """A tool message's text, and the user content parts (files) to send right after the tool messages."""
    rest, files = split_files(part.content)
    if not files:
        return part.model_response_str(), []
    parts: list[dict[str, Any]] = []
    for file in files:
        parts.append({"type": "text", "text": f"This is file {file_name(file)}:"})
        parts.append(_chat_item(file))
    return _tool_text(rest, files), parts


# --- Anthropic Messages ------------------------------------------------------------------------------------


def anthropic_user_blocks(content: str | list[UserContent]) -> list[dict[str, Any]]:
    """A user turn's content blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [_anthropic_block(item) for item in content]


def _anthropic_block(item: UserContent) -> dict[str, Any]:
    if isinstance(item, str):
        return {"type": "text", "text": item}
    if isinstance(item, ImageUrl):
        return {"type": "image", "source": {"type": "url", "url": item.url}}
    if isinstance(item, DocumentUrl):
        return {"type": "document", "source": {"type": "url", "url": item.url}}
    if isinstance(item, BinaryContent):
        if item.is_image:
            return {
                "type": "image",
                "source": {"type": "base64", "media_type": item.media_type, "data": _b64(item.data)},
            }
        if item.media_type == "application/pdf":
            source = {"type": "base64", "media_type": item.media_type, "data": _b64(item.data)}
            return {"type": "document", "source": source}
        if item.media_type.startswith("text/"):
            text = item.data.decode("utf-8", "replace")
            return {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
    raise _unsupported("Anthropic", item, "Claude takes images, PDFs and plain text documents")


def anthropic_tool_result_content(part: ToolReturnPart) -> str | list[dict[str, Any]]:
    """A ``tool_result`` block's content: text, or text and image/document blocks."""
    rest, files = split_files(part.content)
    if not files:
        return part.model_response_str()
    blocks = [] if rest is None else [{"type": "text", "text": _text_of(rest)}]
    return blocks + [_anthropic_block(file) for file in files]


# --- Google Gemini -----------------------------------------------------------------------------------------


def gemini_user_parts(content: str | list[UserContent]) -> list[dict[str, Any]]:
    """A user turn's parts (``google-genai`` dicts: ``inline_data`` takes bytes, the SDK encodes them)."""
    if isinstance(content, str):
        return [{"text": content}]
    return [_gemini_part(item) for item in content]


def _gemini_part(item: UserContent) -> dict[str, Any]:
    if isinstance(item, str):
        return {"text": item}
    if isinstance(item, BinaryContent):
        return {"inline_data": {"mime_type": item.media_type, "data": item.data}}
    media_type = item.resolved_media_type
    if media_type is None:
        raise UserError(
            f"Gemini needs the media type of {item.url!r}; pass {type(item).__name__}(url=..., media_type=...)"
        )
    return {"file_data": {"file_uri": item.url, "mime_type": media_type}}


def gemini_tool_return(part: ToolReturnPart) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A ``function_response``'s ``response`` object, and the parts (files) to send after it."""
    rest, files = split_files(part.content)
    if not files:
        return {"result": part.content if isinstance(part.content, str) else _json_value(part.content)}, []
    parts: list[dict[str, Any]] = []
    for file in files:
        parts.append({"text": f"This is file {file_name(file)}:"})
        parts.append(_gemini_part(file))
    return {"result": _tool_text(rest, files)}, parts


# --- OpenAI Responses --------------------------------------------------------------------------------------


def responses_user_content(content: str | list[UserContent]) -> str | list[dict[str, Any]]:
    """A user ``message`` item's content: the string, or ``input_text``/``input_image``/``input_file`` parts."""
    if isinstance(content, str):
        return content
    return [_responses_item(item) for item in content]


def _responses_item(item: UserContent) -> dict[str, Any]:
    if isinstance(item, str):
        return {"type": "input_text", "text": item}
    if isinstance(item, ImageUrl):
        return {"type": "input_image", "image_url": item.url, "detail": "auto"}
    if isinstance(item, DocumentUrl):
        return {"type": "input_file", "file_url": item.url}
    if isinstance(item, BinaryContent):
        if item.is_image:
            return {"type": "input_image", "image_url": item.data_url(), "detail": "auto"}
        if item.is_document:
            filename = f"{item.identifier}{_extension(item.media_type)}"
            return {"type": "input_file", "filename": filename, "file_data": item.data_url()}
    raise _unsupported("The OpenAI Responses API", item, "it takes images and files (PDF), not audio")


def responses_tool_output(part: ToolReturnPart) -> str | list[dict[str, Any]]:
    """A ``function_call_output``'s ``output``: text, or text, image and file parts."""
    rest, files = split_files(part.content)
    if not files:
        return part.model_response_str()
    items = [] if rest is None else [{"type": "input_text", "text": _text_of(rest)}]
    return items + [_responses_item(file) for file in files]


def _json_value(value: Any) -> Any:
    return pydantic.TypeAdapter(Any).dump_python(value, mode="json")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _extension(media_type: str) -> str:
    import mimetypes

    return mimetypes.guess_extension(media_type) or ""
