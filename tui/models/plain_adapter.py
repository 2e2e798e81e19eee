"""An adapter for small models: plain chat, one call per output field.

A small model (the embedded 135M one, or any small model behind Ollama, LM Studio or a
llama.cpp server) cannot follow DSPy's `[[ ## field ## ]]` format, so `ChatAdapter` fails to
parse its reply. `PlainAdapter` asks in plain chat instead, one call per output field, and
itself sends the field markers into DSPy's stream around the model's own tokens. Stream
listeners and the dashboard then see exactly the stream a hosted model would have produced.
"""

from __future__ import annotations

import contextlib
import re
import typing
from collections.abc import Iterator
from typing import Any

import dspy
from dspy.adapters.chat_adapter import ChatAdapter
from dspy.adapters.utils import format_field_value, parse_value
from dspy.clients.call_result import attributes
from dspy.clients.engines.streaming import EngineChunk
from dspy.signatures.signature import Signature
from dspy.streaming import StreamListener
from dspy.utils.exceptions import AdapterParseError

# The prompt lines are short because a 135M model echoes longer instructions back. Each was
# picked by comparing a few wordings over the same questions with the embedded model.
SYSTEM_LINE = "You are a helpful assistant."
ANSWER_LINE = "Answer the question in one or two short sentences."
REASONING_LINE = "Think step by step, briefly."
FINAL_ANSWER_QUESTION = "So what is the final answer, in one sentence?"
PROMPT_LINES = (SYSTEM_LINE, ANSWER_LINE, REASONING_LINE, FINAL_ANSWER_QUESTION)
REASONING_FIELDS = ("reasoning", "rationale")
_DEFAULT_INSTRUCTIONS = re.compile(r"^Given the fields .*, produce the fields .*\.$", re.DOTALL)
# Options a plain chat cannot honour; passing them on would make providers call tools or fan out.
_UNUSED_LM_OPTIONS = ("tools", "tool_choice", "parallel_tool_calls", "n", "num_generations")

try:
    from dspy.clients._deprecation import adapter_message_call
except ImportError:  # a later DSPy without the 3.4 transition marker

    def adapter_message_call(lm: Any, messages: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def field_marker(field_name: str, *, first: bool = False) -> str:
    """The text DSPy's ChatAdapter format puts before a field's value."""
    separator = "" if first else "\n\n"
    return f"{separator}[[ ## {field_name} ## ]]\n"


COMPLETED_MARKER = field_marker("completed")


def _label(field_name: str) -> str:
    return field_name.replace("_", " ")


def _description(signature: type[Signature], field_name: str) -> str | None:
    """A field description the user wrote, not DSPy's `${name}` placeholder."""
    description = (signature.fields[field_name].json_schema_extra or {}).get("desc", "")
    if not description or description.startswith("${"):
        return None
    return description


def _is_reasoning(field_name: str) -> bool:
    return field_name in REASONING_FIELDS


class PlainAdapter(ChatAdapter):
    """Plain chat for small models, one LM call per output field, with DSPy's field markers streamed.

    It subclasses ChatAdapter because DSPy's stream listeners treat it as one for flushing.
    """

    def __init__(self, callbacks: list[Any] | None = None) -> None:
        super().__init__(callbacks=callbacks, use_json_adapter_fallback=False)

    def __call__(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        options = self._lm_options(lm_kwargs)
        values: dict[str, Any] = {}
        for field_name, marker in self._markers(signature):
            _send_to_stream(marker)
            messages = self.field_messages(signature, demos, inputs, values, field_name)
            with adapter_message_call(lm, messages):
                outputs = lm(messages=messages, **options)
            values[field_name] = self._field_value(signature, field_name, outputs)
        _send_to_stream(COMPLETED_MARKER)
        return [values]

    async def acall(
        self,
        lm: Any,
        lm_kwargs: dict[str, Any],
        signature: type[Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        options = self._lm_options(lm_kwargs)
        values: dict[str, Any] = {}
        for field_name, marker in self._markers(signature):
            await _asend_to_stream(marker)
            messages = self.field_messages(signature, demos, inputs, values, field_name)
            with adapter_message_call(lm, messages):
                outputs = await lm.acall(messages=messages, **options)
            values[field_name] = self._field_value(signature, field_name, outputs)
        await _asend_to_stream(COMPLETED_MARKER)
        return [values]

    def field_messages(
        self,
        signature: type[Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
        earlier: dict[str, Any],
        field_name: str,
    ) -> list[dict[str, str]]:
        """The chat that asks for `field_name`, given the values of the fields before it."""
        order = list(signature.output_fields)
        first = order[0]
        messages = [
            {"role": "system", "content": self._system_line(signature, field_name, first=not earlier)}
        ]
        if not earlier:
            for demo in demos:
                if all(name in demo for name in signature.input_fields) and demo.get(field_name) is not None:
                    messages.append({"role": "user", "content": self._question(signature, demo, first)})
                    messages.append({"role": "assistant", "content": str(demo[field_name])})
        messages.append({"role": "user", "content": self._question(signature, inputs, first)})
        for position, name in enumerate(earlier):
            messages.append({"role": "assistant", "content": str(earlier[name])})
            messages.append({"role": "user", "content": self._follow_up(signature, order[position + 1])})
        return messages

    def _system_line(self, signature: type[Signature], field_name: str, *, first: bool) -> str:
        parts = [ANSWER_LINE if first and field_name == "answer" else SYSTEM_LINE]
        instructions = (signature.instructions or "").strip()
        if instructions and not _DEFAULT_INSTRUCTIONS.match(instructions):
            parts.append(instructions)
        if first and _is_reasoning(field_name):
            parts.append(REASONING_LINE)
        return " ".join(parts)

    def _question(self, signature: type[Signature], inputs: dict[str, Any], first_field: str) -> str:
        present = [(name, info) for name, info in signature.input_fields.items() if name in inputs]
        if len(present) == 1:
            name, info = present[0]
            text = str(format_field_value(field_info=info, value=inputs[name]))
        else:
            text = "\n\n".join(
                f"{_label(name).capitalize()}: {format_field_value(field_info=info, value=inputs[name])}"
                for name, info in present
            )
        if first_field != "answer" and not _is_reasoning(first_field):
            text += f"\n\n{self._ask_for(signature, first_field, 'Give')}"
        return text

    def _follow_up(self, signature: type[Signature], field_name: str) -> str:
        if field_name == "answer" and _description(signature, field_name) is None:
            return FINAL_ANSWER_QUESTION
        return self._ask_for(signature, field_name, "Now give")

    def _ask_for(self, signature: type[Signature], field_name: str, verb: str) -> str:
        description = _description(signature, field_name)
        request = f"{verb} the {_label(field_name)}."
        return f"{request} {description}" if description else request

    def _markers(self, signature: type[Signature]) -> Iterator[tuple[str, str]]:
        for position, field_name in enumerate(signature.output_fields):
            yield field_name, field_marker(field_name, first=position == 0)

    def _lm_options(self, lm_kwargs: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in lm_kwargs.items() if key not in _UNUSED_LM_OPTIONS}

    def _field_value(self, signature: type[Signature], field_name: str, outputs: list[Any]) -> Any:
        output = outputs[0] if outputs else ""
        text = (output.get("text") if isinstance(output, dict) else output) or ""
        text = text.strip()
        annotation = signature.output_fields[field_name].annotation
        try:
            return parse_value(text, annotation)
        except ValueError as error:
            found = _value_in_prose(text, annotation)
            if found is not None:
                return found
            raise AdapterParseError(
                adapter_name=type(self).__name__,
                signature=signature,
                lm_response=text,
                message=f"Failed to parse field {field_name} from the LM response: {error}",
            ) from error


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _value_in_prose(text: str, annotation: Any) -> Any:
    """A small model says "The confidence is 0.9." where a number is asked: read the value it
    gave out of its sentence (a number, yes/no, one of a Literal's options); None when it gave none."""
    if annotation in (int, float):
        match = _NUMBER.search(text)
        if match is None:
            return None
        number = float(match.group())
        return number if annotation is float else (int(number) if number.is_integer() else None)
    if annotation is bool:
        words = set(re.findall(r"[a-z]+", text.lower()))
        if words & {"yes", "true"} and not words & {"no", "false"}:
            return True
        if words & {"no", "false"} and not words & {"yes", "true"}:
            return False
        return None
    if typing.get_origin(annotation) is typing.Literal:
        lowered = text.lower()
        options = [o for o in typing.get_args(annotation) if str(o).lower() in lowered]
        return options[0] if len(options) == 1 else None
    return None


def _marker_chunk(text: str) -> EngineChunk:
    caller = dspy.settings.caller_predict
    return EngineChunk(
        id=None,
        model=None,
        predict_id=id(caller) if caller is not None else None,
        choices=[attributes({"index": 0, "delta": {"content": text}, "finish_reason": None})],
    )


def _send_to_stream(text: str) -> None:
    """Put text into DSPy's stream from a sync program (run in a worker thread by streamify)."""
    stream = dspy.settings.send_stream
    if stream is not None:
        import anyio.from_thread

        anyio.from_thread.run(stream.send, _marker_chunk(text))


async def _asend_to_stream(text: str) -> None:
    stream = dspy.settings.send_stream
    if stream is not None:
        await stream.send(_marker_chunk(text))


class PlainStreamListener(StreamListener):
    """A StreamListener that also accepts PlainAdapter.

    DSPy's listener looks adapters up by class name and refuses names it does not know;
    PlainAdapter streams the ChatAdapter format, so it gets ChatAdapter's entry.
    """

    def __init__(
        self,
        signature_field_name: str,
        predict: Any = None,
        predict_name: str | None = None,
        allow_reuse: bool = False,
    ) -> None:
        super().__init__(signature_field_name, predict, predict_name, allow_reuse)
        self.adapter_identifiers[PlainAdapter.__name__] = self.adapter_identifiers["ChatAdapter"]


def make_listener(field_name: str, predict: Any = None, predict_name: str | None = None) -> StreamListener:
    """A fresh listener for `field_name` that works with every adapter, PlainAdapter included."""
    return PlainStreamListener(field_name, predict=predict, predict_name=predict_name)
